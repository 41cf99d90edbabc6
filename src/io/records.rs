//! The formats of what is kept: offer records, event records, the install key and offer books.
//!
//! An offer record is `AOF5`, the offer's kept fields ([`StoredOffer`]) as an LDK TLV stream
//! (`impl_writeable_tlv_based!`, as LDK writes its own records), and the first 8 bytes of the
//! SHA-256 of all before it. Even types are fields every reader must understand; fields added
//! later take odd types, which readers that do not know them skip, so a later release's record
//! still loads here. Records of earlier formats (`AOF2` to `AOF4`, see [`super::legacy`]) are
//! read as they are and written in this one at their offer's next change.

use lightning::bitcoin::secp256k1::PublicKey;
use lightning::util::ser::{Readable, Writeable};

use super::legacy;
use super::seal::{seal, sealed, unsealed};
use super::stored_offer::StoredOffer;
use super::RecordError;
use crate::events::Event;
use crate::offers::cache::CachedOffer;
use crate::offers::responder::ResponderOf;

/// The current offer record.
pub(crate) const MAGIC: &[u8; 4] = b"AOF5";
/// The install key's record: `AOK1` and the 32 bytes.
const INSTALL_MAGIC: &[u8; 4] = b"AOK1";
/// An event record: `AOE1`, the event in LDK's encoding (below), and a checksum.
const EVENTS_MAGIC: &[u8; 4] = b"AOE1";
/// An offer book, version 1: `AOB1`, the number of offers (u32), each offer's record as it
/// is stored (length-prefixed, so an importer reads records of any format it can load), and a
/// checksum of it all.
const BOOK_MAGIC: &[u8; 4] = b"AOB1";

/// The record of `offer`, in the current format. Written from the offer's own fields, with no
/// copy of them (a [`StoredOffer`] would clone the offer, the invoice and the paths): the same
/// bytes as `StoredOffer`'s writer, which the tests check.
pub(crate) fn encode(offer: &CachedOffer) -> Vec<u8> {
    let mut record = Vec::with_capacity(4096);
    record.extend_from_slice(MAGIC);
    write_offer_fields(&mut record, offer).expect("writing to a Vec cannot fail");
    seal(&mut record);
    record
}

/// The TLV stream of [`StoredOffer`], from a [`CachedOffer`]: keep it field for field as the
/// `impl_writeable_tlv_based!` above.
fn write_offer_fields(
    record: &mut Vec<u8>,
    offer: &CachedOffer,
) -> Result<(), lightning::io::Error> {
    let server_path = ResponderOf(&offer.server_path);
    lightning::write_tlv_fields!(record, {
        (0, offer.server, required),
        (1, offer.invoice_confirmed_at, option),
        (2, offer.slot, required),
        (3, offer.expiry_announced, required),
        (4, offer.state, required),
        (5, offer.expired_announced, required),
        (6, offer.offer, required),
        (7, offer.refresh_failure_announced.then_some(()), option),
        (8, offer.nonce, required),
        (9, offer.verified_at, option),
        (10, offer.label, option),
        (11, offer.broken, option),
        (12, offer.created_at, required),
        (13, offer.checked_at, option),
        (14, offer.handed_out_at, option),
        (15, (offer.check_repairs > 0).then_some(offer.check_repairs), option),
        (16, server_path, required),
        (18, offer.invoice.invoice, required),
        (20, offer.invoice.forward_invoice_request_path, required),
        (22, offer.invoice_confirmed, required),
    });
    Ok(())
}

/// Decodes a record of any format this release reads, and says whether it was in the
/// single-server format (then on `first_server`, under another key).
pub(crate) fn decode(
    bytes: &[u8],
    first_server: PublicKey,
) -> Result<(CachedOffer, bool), RecordError> {
    let magic = bytes.get(..4).unwrap_or_default();
    let body = unsealed(bytes, "an offer record")?;
    let (stored, single_server) = if magic == MAGIC {
        let mut reader = body;
        let stored =
            StoredOffer::read(&mut reader).map_err(|e| RecordError::invalid("record", e))?;
        if !reader.is_empty() {
            return Err(RecordError::TrailingBytes("the record"));
        }
        (stored, false)
    } else {
        legacy::decode(magic, body, first_server)?
    };
    Ok((stored.into_cached()?, single_server))
}

/// Below this many records, decoding on one thread is quicker than starting others (a thread
/// starts in tens of microseconds; a record takes about 0.2 ms).
pub(crate) const PARALLEL_DECODE_FROM: usize = 4;

/// Decodes `records` in order, on every core when there are several: each takes about 0.2 ms
/// (LDK parses every key in the offer and paths, and checks the invoice's signature), which is
/// most of a cold start's time, and an app showing its offer at launch waits for it.
pub(crate) fn decode_all(
    records: &[(String, Vec<u8>)],
    first_server: PublicKey,
) -> Vec<Result<(CachedOffer, bool), RecordError>> {
    // A panic in LDK's parsing fails its record, as a checksum mismatch would, not the load.
    let decode_chunk = |chunk: &[(String, Vec<u8>)]| -> Vec<_> {
        chunk
            .iter()
            .map(|(_, bytes)| {
                std::panic::catch_unwind(|| decode(bytes, first_server))
                    .unwrap_or(Err(RecordError::Panicked))
            })
            .collect()
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads == 1 || records.len() < PARALLEL_DECODE_FROM {
        return decode_chunk(records);
    }
    let chunk = records.len().div_ceil(threads);
    // This thread takes the first chunk: one thread fewer to start.
    let (first, rest) = records.split_at(chunk);
    std::thread::scope(|scope| {
        let workers: Vec<_> = rest
            .chunks(chunk)
            .map(|chunk| (chunk.len(), scope.spawn(move || decode_chunk(chunk))))
            .collect();
        let mut decoded = decode_chunk(first);
        for (len, worker) in workers {
            decoded.extend(
                worker
                    .join()
                    .unwrap_or_else(|_| vec![Err(RecordError::Panicked); len]),
            );
        }
        decoded
    })
}

/// The install key's record.
pub(crate) fn encode_install_key(key: &[u8; 32]) -> Vec<u8> {
    let mut record = INSTALL_MAGIC.to_vec();
    record.extend_from_slice(key);
    record
}

/// The install key of a record (`None`: not one).
pub(crate) fn decode_install_key(record: &[u8]) -> Option<[u8; 32]> {
    record.strip_prefix(INSTALL_MAGIC)?.try_into().ok()
}

/// The record of an event waiting for the app.
pub(crate) fn encode_event(event: &Event) -> Vec<u8> {
    sealed(EVENTS_MAGIC, &event.encode())
}

/// The event of a record. One of a later release's kinds fails here, and is skipped alone.
pub(crate) fn decode_event(bytes: &[u8]) -> Result<Event, RecordError> {
    if !bytes.starts_with(EVENTS_MAGIC) {
        return Err(RecordError::UnknownFormat("an event record"));
    }
    let mut reader = unsealed(bytes, "an event record")?;
    let event = Event::read(&mut reader).map_err(|e| RecordError::invalid("event", e))?;
    if !reader.is_empty() {
        return Err(RecordError::TrailingBytes("the event"));
    }
    Ok(event)
}

// The events and states as LDK encodes its own: TLV-based, so that fields added later (odd
// types) are skipped by readers that do not know them.
// LDK's macros drop readers that have no `Drop`.
#[allow(clippy::drop_non_drop)]
mod event_encoding {
    use crate::events::{Event, OfferInfo};
    use crate::offers::cache::OfferState;

    lightning::impl_writeable_tlv_based_enum!(OfferState,
        (0, Pending) => {},
        (2, Ready) => {},
        (4, Used) => {},
    );

    lightning::impl_writeable_tlv_based!(OfferInfo, {
        (0, server_node_id, required),
        (2, slot, required),
        (4, state, required),
        (6, offer, required),
        (8, offer_id, required),
        (10, label, option),
        (12, created_at, required),
        (14, expires_at, option),
        (16, invoice_confirmed_at, option),
        (17, verified_at, option),
        (19, broken, option),
    });

    lightning::impl_writeable_tlv_based_enum!(Event,
        (0, OfferReady) => { (0, offer, required) },
        (2, OfferReplaced) => { (0, old_offer_id, required), (2, new_offer, required) },
        (4, OfferExpiring) => { (0, offer, required) },
        (6, OfferExpired) => { (0, offer_id, required) },
        (8, InvoiceRefreshed) => { (0, offer_id, required) },
        (10, InvoiceRefreshFailed) => { (0, offer, required), (2, reason, required) },
        (12, ServerConnected) => { (0, server_node_id, required) },
        (14, ServerDisconnected) => { (0, server_node_id, required) },
        (16, InvoiceRequestForwarded) => {
            (0, offer_id, required),
            (2, amount_msats, option),
            (4, payer_note, option),
        },
        (18, OfferBroken) => { (0, offer, required), (2, reason, required) },
    );
}

/// The book of `offers`.
pub(crate) fn encode_book<'a>(offers: impl Iterator<Item = &'a CachedOffer>) -> Vec<u8> {
    let records: Vec<Vec<u8>> = offers.map(encode).collect();
    let mut out = Vec::with_capacity(records.iter().map(|r| r.len() + 4).sum::<usize>() + 16);
    out.extend_from_slice(BOOK_MAGIC);
    out.extend_from_slice(&(records.len() as u32).to_be_bytes());
    for record in &records {
        out.extend_from_slice(&(record.len() as u32).to_be_bytes());
        out.extend_from_slice(record);
    }
    seal(&mut out);
    out
}

/// The offers of a book; records of the single-server format are `first_server`'s.
pub(crate) fn decode_book(
    bytes: &[u8],
    first_server: PublicKey,
) -> Result<Vec<CachedOffer>, RecordError> {
    if !bytes.starts_with(BOOK_MAGIC) {
        return Err(RecordError::UnknownFormat("an offer book"));
    }
    let mut r = legacy::Reader(unsealed(bytes, "an offer book")?);
    let count = u32::from_be_bytes(r.array("count")?);
    let mut offers = Vec::with_capacity(count.min(4096) as usize);
    for index in 0..count {
        let record = r.bytes("offer")?;
        let (offer, _) = decode(record, first_server).map_err(|why| RecordError::InBook {
            index,
            why: Box::new(why),
        })?;
        offers.push(offer);
    }
    if !r.0.is_empty() {
        return Err(RecordError::TrailingBytes("the book"));
    }
    Ok(offers)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use lightning::util::ser::Writeable;

    use super::*;
    use crate::io::seal::CHECKSUM_LEN;
    use crate::offers::cache::OfferState;
    use crate::test_utils::offer_fixture;

    #[test]
    fn a_record_is_written_as_the_stored_offers_own_writer_writes_it_and_reads_back() {
        let fixture = offer_fixture();
        let made = Duration::new(1_800_000_000, 5);
        let plain = fixture.cached(0, made, None);
        let mut full = fixture.cached(7, made, Some(made + Duration::from_secs(86_400)));
        full.state = OfferState::Used;
        full.label = Some("bio ✓".into());
        full.handed_out_at = Some(made + Duration::from_secs(3));
        full.invoice_confirmed = true;
        full.invoice_confirmed_at = Some(made + Duration::new(4, 7));
        full.expiry_announced = true;
        full.expired_announced = true;
        full.refresh_failure_announced = true;
        for offer in [plain, full] {
            let record = encode(&offer);
            assert_eq!(record, sealed(MAGIC, &StoredOffer::of(&offer).encode()));
            let (back, single_server) = decode(&record, offer.server).unwrap();
            assert!(!single_server);
            assert_eq!(encode(&back), record, "read back as it was");
        }
    }

    #[test]
    fn a_damaged_or_foreign_record_says_which_it_is() {
        let fixture = offer_fixture();
        let offer = fixture.cached(3, Duration::from_secs(1_800_000_000), None);
        let server = offer.server;
        let mut flipped = encode(&offer);
        flipped[40] ^= 1;
        assert_eq!(decode(&flipped, server).unwrap_err(), RecordError::Checksum);
        assert_eq!(
            decode(b"AOF", server).unwrap_err(),
            RecordError::TooShort("an offer record")
        );
        let foreign = sealed(b"XYZ1", b"anything");
        assert_eq!(
            decode(&foreign, server).unwrap_err(),
            RecordError::UnknownFormat("an offer record")
        );
        let mut cut = encode(&offer);
        cut.truncate(cut.len() - CHECKSUM_LEN - 20);
        seal(&mut cut);
        assert!(matches!(
            decode(&cut, server).unwrap_err(),
            RecordError::Invalid {
                field: "record",
                ..
            }
        ));
    }
}
