//! Offer records of earlier releases, read as they are: every install in the field holds some,
//! and offer books carry them too. Each is written in the current format ([`super::records`])
//! the next time its offer changes, under the same key, so a record is always wholly one
//! format or the other, whenever a process is killed.
//!
//! - `AOF4` (0.1.x after the kept events): the `AOF3` fields, then an LDK TLV stream with when
//!   the invoice was last confirmed and what was announced of the offer.
//! - `AOF3` (0.1.0): the server (33 bytes), the slot (u16), the state (one byte), the offer
//!   (length-prefixed, u32), the nonce (16 bytes), the label (a flag byte, then
//!   length-prefixed UTF-8), `created_at` (ns, u64), `handed_out_at` (a flag, then ns), the
//!   server's reply path as a `Responder`, the invoice and its forward path (each
//!   length-prefixed), and whether the invoice was confirmed (one byte).
//! - `AOF2` (single-server releases): `AOF3` without the server, under the key `slot_NNNNN`;
//!   read as the first configured server's and moved to its key at start (see
//!   [`super::store::OfferStore::load_all`]).
//!
//! All big-endian, each followed by the checksum every record ends with.

use std::time::Duration;

use lightning::bitcoin::secp256k1::PublicKey;
use lightning::blinded_path::message::BlindedMessagePath;
use lightning::offers::nonce::Nonce;
use lightning::offers::offer::Offer;
use lightning::offers::static_invoice::StaticInvoice;
use lightning::util::ser::Readable;

use super::stored_offer::StoredOffer;
use super::RecordError;
use crate::offers::cache::OfferState;
use crate::offers::responder::AsResponder;

pub(crate) const AOF4: &[u8; 4] = b"AOF4";
pub(crate) const AOF3: &[u8; 4] = b"AOF3";
pub(crate) const AOF2: &[u8; 4] = b"AOF2";

/// What an `AOF4` record's announcement flags mean.
const EXPIRY_ANNOUNCED: u8 = 1;
const EXPIRED_ANNOUNCED: u8 = 2;

/// Decodes the `body` of a record whose magic is `magic`, and says whether it was in the
/// single-server format (then on `first_server`).
pub(crate) fn decode(
    magic: &[u8],
    body: &[u8],
    first_server: PublicKey,
) -> Result<(StoredOffer, bool), RecordError> {
    let single_server = magic == AOF2;
    let has_extension = magic == AOF4;
    if !has_extension && magic != AOF3 && !single_server {
        return Err(RecordError::UnknownFormat("an offer record"));
    }
    let mut r = Reader(body);
    let server = match single_server {
        true => first_server,
        false => PublicKey::from_slice(&r.array::<33>("server")?)
            .map_err(|e| RecordError::invalid("server node id", e))?,
    };
    let slot = u16::from_be_bytes(r.array("slot")?);
    let state = match r.array::<1>("state")?[0] {
        0 => OfferState::Pending,
        1 => OfferState::Ready,
        2 => OfferState::Used,
        other => return Err(RecordError::invalid("state", other)),
    };
    let offer = Offer::try_from(r.bytes("offer")?.to_vec())
        .map_err(|e| RecordError::invalid("offer", e))?;
    let nonce = Nonce::try_from(&r.array::<{ Nonce::LENGTH }>("nonce")?[..])
        .map_err(|()| RecordError::invalid("nonce", "not 16 bytes"))?;
    let label = match r.array::<1>("label flag")?[0] {
        0 => None,
        1 => Some(
            String::from_utf8(r.bytes("label")?.to_vec())
                .map_err(|_| RecordError::invalid("label", "not UTF-8"))?,
        ),
        other => return Err(RecordError::invalid("label flag", other)),
    };
    let created_at = Duration::from_nanos(u64::from_be_bytes(r.array("created_at")?));
    let handed_out_at = match r.array::<1>("handed-out flag")?[0] {
        0 => None,
        1 => Some(Duration::from_nanos(u64::from_be_bytes(
            r.array("handed_out_at")?,
        ))),
        other => return Err(RecordError::invalid("handed-out flag", other)),
    };
    let server_path: AsResponder = r.ldk("server reply path")?;
    let invoice = StaticInvoice::try_from(r.bytes("invoice")?.to_vec())
        .map_err(|e| RecordError::invalid("invoice", e))?;
    let forward_invoice_request_path: BlindedMessagePath = r.ldk("forward path")?;
    let invoice_confirmed = match r.array::<1>("confirmed")?[0] {
        0 => false,
        1 => true,
        other => return Err(RecordError::invalid("confirmed flag", other)),
    };
    let (invoice_confirmed_at, announced) = match has_extension {
        true => read_extension(&mut r.0).map_err(|e| RecordError::invalid("TLV fields", e))?,
        // Earlier records did not say when; a confirmed invoice was confirmed about when it
        // was made.
        false => (invoice_confirmed.then(|| invoice.created_at()), 0),
    };
    if !r.0.is_empty() {
        return Err(RecordError::TrailingBytes("the record"));
    }
    let offer = StoredOffer {
        server,
        slot,
        state,
        offer,
        nonce,
        label,
        created_at,
        handed_out_at,
        server_path,
        invoice,
        forward_invoice_request_path,
        invoice_confirmed,
        invoice_confirmed_at,
        expiry_announced: announced & EXPIRY_ANNOUNCED != 0,
        expired_announced: announced & EXPIRED_ANNOUNCED != 0,
        refresh_failure_announced: None,
        verified_at: None,
        broken: None,
        checked_at: None,
        check_repairs: None,
    };
    Ok((offer, single_server))
}

/// Reads an `AOF4` record's TLV stream: when the invoice was last confirmed, and the
/// announcement flags.
// LDK's `read_tlv_fields!` drops its reader, which has no `Drop`.
#[allow(clippy::drop_non_drop)]
fn read_extension(
    stream: &mut &[u8],
) -> Result<(Option<Duration>, u8), lightning::ln::msgs::DecodeError> {
    let mut invoice_confirmed_at: Option<u64> = None;
    let mut announced: Option<u8> = None;
    lightning::read_tlv_fields!(stream, {
        (1, invoice_confirmed_at, option),
        (3, announced, option),
    });
    Ok((
        invoice_confirmed_at.map(Duration::from_nanos),
        announced.unwrap_or(0),
    ))
}

/// Reads the length-prefixed layout of the records above and of offer books.
pub(crate) struct Reader<'a>(pub &'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], RecordError> {
        if self.0.len() < len {
            return Err(RecordError::Truncated(what));
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(head)
    }

    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], RecordError> {
        Ok(self.take(N, what)?.try_into().expect("length checked"))
    }

    pub fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], RecordError> {
        let len = u32::from_be_bytes(self.array(what)?) as usize;
        self.take(len, what)
    }

    fn ldk<T: Readable>(&mut self, what: &'static str) -> Result<T, RecordError> {
        let mut bytes = self.bytes(what)?;
        let value = T::read(&mut bytes).map_err(|e| RecordError::invalid(what, e))?;
        if !bytes.is_empty() {
            return Err(RecordError::TrailingBytes(what));
        }
        Ok(value)
    }
}

/// Records as the earlier releases wrote them, for the tests that load them: the writers of
/// those releases, kept as they were.
#[cfg(test)]
pub(crate) mod writers {
    use lightning::util::ser::Writeable;

    use super::{AOF2, AOF3, AOF4, EXPIRED_ANNOUNCED, EXPIRY_ANNOUNCED};
    use crate::io::seal::seal;
    use crate::offers::cache::{CachedOffer, OfferState};
    use crate::offers::responder::responder_encoding;

    fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(bytes);
    }

    fn nanos(time: std::time::Duration) -> u64 {
        u64::try_from(time.as_nanos()).unwrap_or(u64::MAX)
    }

    /// The `AOF3` fields of `offer`, with the server or without.
    fn aof3_body(offer: &CachedOffer, with_server: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(2048);
        if with_server {
            out.extend_from_slice(&offer.server.serialize());
        }
        out.extend_from_slice(&offer.slot.to_be_bytes());
        out.push(match offer.state {
            OfferState::Pending => 0,
            OfferState::Ready => 1,
            OfferState::Used => 2,
        });
        put_bytes(&mut out, &offer.offer.encode());
        out.extend_from_slice(offer.nonce.as_slice());
        match &offer.label {
            Some(label) => {
                out.push(1);
                put_bytes(&mut out, label.as_bytes());
            }
            None => out.push(0),
        }
        out.extend_from_slice(&nanos(offer.created_at).to_be_bytes());
        match offer.handed_out_at {
            Some(at) => {
                out.push(1);
                out.extend_from_slice(&nanos(at).to_be_bytes());
            }
            None => out.push(0),
        }
        put_bytes(&mut out, &responder_encoding(&offer.server_path));
        put_bytes(&mut out, &offer.invoice.invoice.encode());
        put_bytes(
            &mut out,
            &offer.invoice.forward_invoice_request_path.encode(),
        );
        out.push(offer.invoice_confirmed as u8);
        out
    }

    fn sealed(magic: &[u8; 4], body: Vec<u8>) -> Vec<u8> {
        let mut record = magic.to_vec();
        record.extend(body);
        seal(&mut record);
        record
    }

    /// `offer`'s record as 0.1.x wrote it after the kept events.
    pub fn aof4(offer: &CachedOffer) -> Vec<u8> {
        let mut body = aof3_body(offer, true);
        let invoice_confirmed_at = offer.invoice_confirmed_at.map(nanos);
        let announced = (offer.expiry_announced as u8) * EXPIRY_ANNOUNCED
            + (offer.expired_announced as u8) * EXPIRED_ANNOUNCED;
        let announced = (announced != 0).then_some(announced);
        (|| -> Result<(), lightning::io::Error> {
            let out = &mut body;
            lightning::write_tlv_fields!(out, {
                (1, invoice_confirmed_at, option),
                (3, announced, option),
            });
            Ok(())
        })()
        .expect("writing to a Vec cannot fail");
        sealed(AOF4, body)
    }

    /// `offer`'s record as 0.1.0 wrote it.
    pub fn aof3(offer: &CachedOffer) -> Vec<u8> {
        sealed(AOF3, aof3_body(offer, true))
    }

    /// `offer`'s record as the single-server releases wrote it (under `slot_NNNNN`).
    pub fn aof2(offer: &CachedOffer) -> Vec<u8> {
        sealed(AOF2, aof3_body(offer, false))
    }
}
