//! Just enough of the zip format to take members out of the GroupLens archives (stored or
//! deflated entries, no zip64, no encryption), so fetching MovieLens needs no extra crate.

use crate::DataError;
use flate2::read::DeflateDecoder;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

const EOCD_SIG: u32 = 0x0605_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const LOCAL_SIG: u32 = 0x0403_4b50;

fn u16le(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32le(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Extracts `member` of the archive at `zip_path` to `to` (written via a temporary file).
pub fn extract(zip_path: &Path, member: &str, to: &Path) -> Result<(), DataError> {
    let bad = |msg: &str| DataError::parse(zip_path, 0, format!("zip: {msg}"));
    let io = |e| DataError::io(zip_path, e);
    let mut f = std::fs::File::open(zip_path).map_err(io)?;
    let len = f.metadata().map_err(io)?.len();
    // The end-of-central-directory record sits in the last 22 + 65535 bytes.
    let tail_len = len.min(22 + 65_535);
    f.seek(SeekFrom::Start(len - tail_len)).map_err(io)?;
    let mut tail = vec![0u8; tail_len as usize];
    f.read_exact(&mut tail).map_err(io)?;
    let eocd = (0..tail.len().saturating_sub(21))
        .rev()
        .find(|&i| u32le(&tail, i) == EOCD_SIG)
        .ok_or_else(|| bad("no end-of-central-directory record (truncated download?)"))?;
    let entries = u16le(&tail, eocd + 10) as usize;
    let cd_size = u32le(&tail, eocd + 12) as u64;
    let cd_offset = u32le(&tail, eocd + 16) as u64;
    if cd_offset + cd_size > len {
        return Err(bad(
            "central directory outside the file (truncated download?)",
        ));
    }
    f.seek(SeekFrom::Start(cd_offset)).map_err(io)?;
    let mut cd = vec![0u8; cd_size as usize];
    f.read_exact(&mut cd).map_err(io)?;
    let mut at = 0;
    for _ in 0..entries {
        if at + 46 > cd.len() || u32le(&cd, at) != CENTRAL_SIG {
            return Err(bad("malformed central directory"));
        }
        let method = u16le(&cd, at + 10);
        let csize = u32le(&cd, at + 20) as u64;
        let name_len = u16le(&cd, at + 28) as usize;
        let extra_len = u16le(&cd, at + 30) as usize;
        let comment_len = u16le(&cd, at + 32) as usize;
        let local = u32le(&cd, at + 42) as u64;
        let name = cd
            .get(at + 46..at + 46 + name_len)
            .ok_or_else(|| bad("malformed central directory"))?;
        at += 46 + name_len + extra_len + comment_len;
        if name != member.as_bytes() {
            continue;
        }
        f.seek(SeekFrom::Start(local)).map_err(io)?;
        let mut lh = [0u8; 30];
        f.read_exact(&mut lh).map_err(io)?;
        if u32le(&lh, 0) != LOCAL_SIG {
            return Err(bad("malformed local header"));
        }
        let skip = u16le(&lh, 26) as i64 + u16le(&lh, 28) as i64;
        f.seek(SeekFrom::Current(skip)).map_err(io)?;
        let data = (&mut f).take(csize);
        let tmp = to.with_extension("extracting");
        let mut out = std::fs::File::create(&tmp).map_err(|e| DataError::io(&tmp, e))?;
        let copied = match method {
            0 => std::io::copy(&mut { data }, &mut out),
            8 => std::io::copy(&mut DeflateDecoder::new(data), &mut out),
            m => {
                return Err(bad(&format!(
                    "member {member}: compression method {m} not supported"
                )));
            }
        };
        copied.map_err(|e| DataError::parse(zip_path, 0, format!("zip: member {member}: {e}")))?;
        return std::fs::rename(&tmp, to).map_err(|e| DataError::io(to, e));
    }
    Err(bad(&format!("no member `{member}`")))
}
