//! The checksum every record ends with: the first 8 bytes of the SHA-256 of all before it,
//! magic included. It catches what a torn or flipped write leaves; LDK's own records have none.

use lightning::bitcoin::hashes::sha256::Hash as Sha256;
use lightning::bitcoin::hashes::Hash;

use super::RecordError;

/// How much of the SHA-256 of a record ends it.
pub(crate) const CHECKSUM_LEN: usize = 8;

/// `magic`, `body`, and the checksum of both.
pub(crate) fn sealed(magic: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut record = Vec::with_capacity(magic.len() + body.len() + CHECKSUM_LEN);
    record.extend_from_slice(magic);
    record.extend_from_slice(body);
    seal(&mut record);
    record
}

/// Appends the checksum of `record`.
pub(crate) fn seal(record: &mut Vec<u8>) {
    let checksum = Sha256::hash(record).to_byte_array();
    record.extend_from_slice(&checksum[..CHECKSUM_LEN]);
}

/// What lies between a record's magic and its checksum, once the checksum is right.
pub(crate) fn unsealed<'a>(record: &'a [u8], what: &'static str) -> Result<&'a [u8], RecordError> {
    if record.len() < 4 + CHECKSUM_LEN {
        return Err(RecordError::TooShort(what));
    }
    let (body, checksum) = record.split_at(record.len() - CHECKSUM_LEN);
    if Sha256::hash(body).to_byte_array()[..CHECKSUM_LEN] != *checksum {
        return Err(RecordError::Checksum);
    }
    Ok(&body[4..])
}
