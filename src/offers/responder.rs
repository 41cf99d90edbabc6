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
pub(crate) fn responder_encoding(path: &BlindedMessagePath) -> Vec<u8> {
    let path_bytes = path.encode();
    let mut record = Vec::with_capacity(path_bytes.len() + 6);
    BigSize(0).write(&mut record).expect("writes to a Vec");
    BigSize(path_bytes.len() as u64)
        .write(&mut record)
        .expect("writes to a Vec");
    record.extend_from_slice(&path_bytes);
    let mut stream = Vec::with_capacity(record.len() + 3);
    BigSize(record.len() as u64)
        .write(&mut stream)
        .expect("writes to a Vec");
    stream.extend_from_slice(&record);
    stream
}

/// A reply path written and read as LDK writes the [`Responder`] holding it: how records keep
/// the server's reply path, without building a `Responder` for every write.
pub(crate) struct AsResponder(pub BlindedMessagePath);

impl Writeable for AsResponder {
    fn write<W: Writer>(&self, writer: &mut W) -> Result<(), lightning::io::Error> {
        writer.write_all(&responder_encoding(&self.0))
    }
}

impl Readable for AsResponder {
    fn read<R: lightning::io::Read>(reader: &mut R) -> Result<Self, DecodeError> {
        let responder = Responder::read(reader)?;
        reply_path_of(&responder).map(Self)
    }
}
