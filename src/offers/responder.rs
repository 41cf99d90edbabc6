//! LDK's `Responder` (the reply path of a received onion message) to and from its reply path.
//! A `Responder` has no public accessor or constructor, but it is `Writeable` and `Readable`:
//! a length-prefixed TLV stream with one record, type 0, holding the reply path. The engine
//! keeps the server's reply path of each offer to send its invoices over; the store writes it
//! in a responder's encoding, as LDK persists reply paths.

use lightning::blinded_path::message::BlindedMessagePath;
use lightning::ln::msgs::DecodeError;
use lightning::onion_message::messenger::Responder;
use lightning::util::ser::{BigSize, Readable, Writeable, Writer};

/// The path a [`Responder`] replies over.
pub(crate) fn reply_path_of(responder: &Responder) -> Result<BlindedMessagePath, DecodeError> {
    let encoded = responder.encode();
    let mut stream = &encoded[..];
    let _stream_len = BigSize::read(&mut stream)?;
    if BigSize::read(&mut stream)?.0 != 0 {
        return Err(DecodeError::InvalidValue);
    }
    let _record_len = BigSize::read(&mut stream)?;
    BlindedMessagePath::read(&mut stream)
}

/// A [`Responder`] replying over `path`, as a received message carries one (for the tests and
/// fuzz targets, which play the server).
#[cfg(any(test, feature = "testing"))]
pub(crate) fn responder_for(path: &BlindedMessagePath) -> Responder {
    Responder::read(&mut &responder_encoding(path)[..]).expect("a valid responder encoding")
}

/// The encoding of a [`Responder`] replying over `path`.
#[cfg(any(test, feature = "testing"))]
pub(crate) fn responder_encoding(path: &BlindedMessagePath) -> Vec<u8> {
    ResponderOf(path).encode()
}

/// Writes a [`Responder`] replying over a path, without making one: the stream's length, then
/// its one record (type 0, the path's length, the path).
pub(crate) struct ResponderOf<'a>(pub &'a BlindedMessagePath);

impl Writeable for ResponderOf<'_> {
    fn write<W: Writer>(&self, writer: &mut W) -> Result<(), lightning::io::Error> {
        let path_len = self.0.serialized_length() as u64;
        let record_len = BigSize(0).serialized_length() as u64
            + BigSize(path_len).serialized_length() as u64
            + path_len;
        BigSize(record_len).write(writer)?;
        BigSize(0).write(writer)?;
        BigSize(path_len).write(writer)?;
        self.0.write(writer)
    }
}

/// A reply path written and read as LDK writes the [`Responder`] holding it: how records keep
/// the server's reply path, without building a `Responder` for every write.
pub(crate) struct AsResponder(pub BlindedMessagePath);

impl Writeable for AsResponder {
    fn write<W: Writer>(&self, writer: &mut W) -> Result<(), lightning::io::Error> {
        ResponderOf(&self.0).write(writer)
    }
}

impl Readable for AsResponder {
    fn read<R: lightning::io::Read>(reader: &mut R) -> Result<Self, DecodeError> {
        let responder = Responder::read(reader)?;
        reply_path_of(&responder).map(Self)
    }
}
