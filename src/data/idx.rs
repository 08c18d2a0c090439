//! IDX reader (LeCun's MNIST format, also used by Fashion-MNIST), raw or gzip-compressed.
//!
//! Layout: magic `0x00 0x00 <type> <ndim>`, then `ndim` big-endian u32 sizes, then the data.
//! Only unsigned bytes (type 0x08) occur in these datasets, so only those are accepted.
//!
//! Resource bounds: the header's dimension product is computed with overflow checks and
//! capped at [`MAX_IDX_DATA_BYTES`]; a raw file must hold exactly that many data bytes; a
//! gzip file is inflated through a reader limited to the size its header promises (and the
//! header must not promise more than deflate's maximum ratio allows for the compressed
//! size), so a small "gzip bomb" cannot allocate more than its header honestly describes.
use crate::error::{data_err, Result};
use flate2::read::GzDecoder;
use std::io::Read;
use std::path::Path;

/// Largest IDX payload accepted (1 GiB): EMNIST "byclass", the largest IDX set in common
/// use, is 0.55 GB; anything claiming more is a corrupt header or a hostile file.
pub const MAX_IDX_DATA_BYTES: usize = 1 << 30;

/// Deflate cannot expand data by more than 1032:1 (RFC 1951: the longest match, 258 bytes,
/// costs at least 2 bits); with slack for the gzip header and trailer this bounds what a
/// gzip file of a given size can honestly inflate to.
const MAX_DEFLATE_RATIO: usize = 1032;

/// An n-dimensional array of bytes read from an IDX file.
#[derive(Debug)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

fn is_gzip(raw: &[u8]) -> bool {
    raw.len() >= 2 && raw[0] == 0x1f && raw[1] == 0x8b
}

/// Parses an IDX file of unsigned bytes with the expected number of dimensions.
pub fn read_idx(path: &Path, expected_ndim: usize) -> Result<IdxArray> {
    let file =
        std::fs::File::open(path).map_err(|e| data_err(path, format!("cannot read: {e}")))?;
    // Bounded read: a path such as /dev/zero or a runaway file must not exhaust memory.
    let limit = MAX_IDX_DATA_BYTES + 4 + 4 * 255;
    let mut raw = Vec::new();
    file.take(limit as u64 + 1)
        .read_to_end(&mut raw)
        .map_err(|e| data_err(path, format!("cannot read: {e}")))?;
    if raw.len() > limit {
        return Err(data_err(
            path,
            format!("larger than {limit} bytes, the most an IDX file may hold here"),
        ));
    }
    parse_idx_bytes(&raw, path, expected_ndim)
}

/// [`read_idx`] on the file's bytes (raw or gzip); `path` only names the source in errors.
pub fn parse_idx_bytes(raw: &[u8], path: &Path, expected_ndim: usize) -> Result<IdxArray> {
    if is_gzip(raw) {
        let mut dec = GzDecoder::new(raw);
        let gz_err =
            |e: std::io::Error| data_err(path, format!("corrupt or truncated gzip stream: {e}"));
        // The header first (at most 4 + 4 * 255 bytes), then exactly the promised data.
        let mut head = Vec::new();
        (&mut dec).take(4).read_to_end(&mut head).map_err(gz_err)?;
        let ndim = check_magic(&head, path, expected_ndim)?;
        (&mut dec).take(4 * ndim as u64).read_to_end(&mut head).map_err(gz_err)?;
        let dims = parse_dims(&head, path, ndim)?;
        let expected = data_size(&dims, path)?;
        let most = raw.len().saturating_mul(MAX_DEFLATE_RATIO);
        if expected > most {
            return Err(data_err(
                path,
                format!(
                    "header {dims:?} promises {expected} data bytes, more than a {}-byte gzip \
                     stream can inflate to ({most}); corrupt header",
                    raw.len()
                ),
            ));
        }
        let mut data = Vec::with_capacity(expected);
        (&mut dec).take(expected as u64).read_to_end(&mut data).map_err(gz_err)?;
        if data.len() < expected {
            return Err(data_err(
                path,
                format!(
                    "truncated: header {dims:?} needs {expected} data bytes, the gzip stream \
                     holds {}",
                    data.len()
                ),
            ));
        }
        // One more byte must not exist; reading to the end also checks the gzip CRC.
        let mut extra = [0u8; 1];
        if dec.read(&mut extra).map_err(gz_err)? != 0 {
            return Err(data_err(
                path,
                format!(
                    "too long: header {dims:?} needs {expected} data bytes, the gzip stream \
                     holds more"
                ),
            ));
        }
        Ok(IdxArray { dims, data })
    } else {
        let ndim = check_magic(raw, path, expected_ndim)?;
        let dims = parse_dims(raw, path, ndim)?;
        let expected = data_size(&dims, path)?;
        let got = raw.len() - (4 + 4 * ndim);
        if got != expected {
            let what = if got < expected { "truncated" } else { "too long" };
            return Err(data_err(
                path,
                format!("{what}: header {dims:?} needs {expected} data bytes, the file has {got}"),
            ));
        }
        Ok(IdxArray { dims, data: raw[4 + 4 * ndim..].to_vec() })
    }
}

/// Checks the 4-byte magic and returns the number of dimensions.
fn check_magic(bytes: &[u8], path: &Path, expected_ndim: usize) -> Result<usize> {
    if bytes.len() < 4 {
        return Err(data_err(path, format!("truncated: {} bytes, no IDX header", bytes.len())));
    }
    let (zero, dtype, ndim) = (&bytes[0..2], bytes[2], bytes[3] as usize);
    if zero != [0, 0] || dtype != 0x08 || ndim != expected_ndim {
        return Err(data_err(
            path,
            format!(
                "wrong magic number 0x{:02x}{:02x}{:02x}{:02x}: expected 0x000008{:02x} \
                 (IDX, unsigned bytes, {expected_ndim} dimensions)",
                bytes[0], bytes[1], bytes[2], bytes[3], expected_ndim
            ),
        ));
    }
    Ok(ndim)
}

/// The `ndim` big-endian sizes after the magic.
fn parse_dims(bytes: &[u8], path: &Path, ndim: usize) -> Result<Vec<usize>> {
    if bytes.len() < 4 + 4 * ndim {
        return Err(data_err(path, "truncated: the header ends before its dimension sizes"));
    }
    Ok(bytes[4..4 + 4 * ndim]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect())
}

/// The number of data bytes the header promises, refused when it overflows or is absurd.
fn data_size(dims: &[usize], path: &Path) -> Result<usize> {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= MAX_IDX_DATA_BYTES)
        .ok_or_else(|| {
            data_err(
                path,
                format!(
                    "header {dims:?} promises more than {MAX_IDX_DATA_BYTES} data bytes \
                     (the product of the sizes overflows or exceeds the limit); corrupt header"
                ),
            )
        })
}

/// Writes an IDX file of unsigned bytes (used by tests and by tools that make small sets).
pub fn write_idx(path: &Path, dims: &[usize], data: &[u8]) -> std::io::Result<()> {
    let mut out = vec![0u8, 0, 0x08, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&(*d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    std::fs::write(path, out)
}
