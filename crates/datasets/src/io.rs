//! Streaming line access to raw files, gzip or plain, exactly as downloaded.

use crate::DataError;
use flate2::read::MultiGzDecoder;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// How a line's bytes become text. MovieLens 100K/1M ship Latin-1 titles; everything else is UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Utf8,
    Latin1,
}

/// Reads a file line by line into one reused buffer, counting 1-based line numbers so every
/// error can point at the line. Gzip is recognised by its magic bytes, not the file name, because
/// mirrors differ in whether they keep the `.gz` suffix.
pub struct LineReader {
    path: PathBuf,
    inner: Box<dyn BufRead + Send>,
    buf: Vec<u8>,
    text: String,
    line: u64,
    gzip: bool,
    encoding: Encoding,
}

impl LineReader {
    pub fn open(path: &Path) -> Result<Self, DataError> {
        Self::open_with(path, Encoding::Utf8)
    }

    pub fn open_with(path: &Path, encoding: Encoding) -> Result<Self, DataError> {
        let mut file = File::open(path).map_err(|e| DataError::io(path, e))?;
        let mut magic = [0u8; 2];
        let n = read_up_to(&mut file, &mut magic).map_err(|e| DataError::io(path, e))?;
        let gzip = n == 2 && magic == GZIP_MAGIC;
        let file = File::open(path).map_err(|e| DataError::io(path, e))?;
        let inner: Box<dyn BufRead + Send> = if gzip {
            Box::new(BufReader::with_capacity(1 << 20, MultiGzDecoder::new(file)))
        } else {
            Box::new(BufReader::with_capacity(1 << 20, file))
        };
        Ok(Self {
            path: path.to_owned(),
            inner,
            buf: Vec::with_capacity(4096),
            text: String::new(),
            line: 0,
            gzip,
            encoding,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// 1-based number of the line last returned.
    pub fn line_no(&self) -> u64 {
        self.line
    }

    /// The next line's 1-based number and text without its `\n` / `\r\n`, or `None` at the end.
    pub fn next_line(&mut self) -> Result<Option<(u64, &str)>, DataError> {
        self.buf.clear();
        let n = match self.inner.read_until(b'\n', &mut self.buf) {
            Ok(n) => n,
            Err(e) if self.gzip && is_truncation(&e) => {
                return Err(DataError::TruncatedGzip {
                    path: self.path.clone(),
                    line: self.line + 1,
                });
            }
            Err(e) => return Err(DataError::io(&self.path, e)),
        };
        if n == 0 {
            return Ok(None);
        }
        self.line += 1;
        let mut end = self.buf.len();
        if end > 0 && self.buf[end - 1] == b'\n' {
            end -= 1;
        }
        if end > 0 && self.buf[end - 1] == b'\r' {
            end -= 1;
        }
        let bytes = &self.buf[..end];
        match self.encoding {
            Encoding::Utf8 => match std::str::from_utf8(bytes) {
                Ok(s) => Ok(Some((self.line, s))),
                Err(e) => Err(DataError::NotUtf8 {
                    path: self.path.clone(),
                    line: self.line,
                    offset: e.valid_up_to(),
                }),
            },
            Encoding::Latin1 => {
                // Latin-1 maps each byte to the code point of the same value.
                self.text.clear();
                self.text.extend(bytes.iter().map(|&b| b as char));
                Ok(Some((self.line, &self.text)))
            }
        }
    }
}

fn is_truncation(e: &std::io::Error) -> bool {
    // flate2 reports a cut-off stream as UnexpectedEof, and a damaged deflate block as
    // InvalidInput / InvalidData; both mean the download is incomplete or corrupt.
    matches!(
        e.kind(),
        std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::InvalidInput
            | std::io::ErrorKind::InvalidData
    )
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Splits one CSV record on `sep`, honouring RFC 4180 double quotes (`"a, b"`, `""` for a quote).
/// Fields are borrowed unless they contain an escaped quote. An unterminated quote is an error the
/// caller reports with file and line.
pub fn split_csv<'a>(
    line: &'a str,
    sep: u8,
    out: &mut Vec<std::borrow::Cow<'a, str>>,
) -> Result<(), String> {
    use std::borrow::Cow;
    out.clear();
    let bytes = line.as_bytes();
    if !bytes.contains(&b'"') {
        out.extend(line.split(sep as char).map(Cow::Borrowed));
        return Ok(());
    }
    let mut i = 0;
    loop {
        if i < bytes.len() && bytes[i] == b'"' {
            let start = i + 1;
            let mut j = start;
            let mut owned: Option<String> = None;
            loop {
                match bytes[j..].iter().position(|&b| b == b'"') {
                    None => return Err(format!("unterminated quoted field at column {}", i + 1)),
                    Some(p) => {
                        let q = j + p;
                        if bytes.get(q + 1) == Some(&b'"') {
                            owned.get_or_insert_with(String::new).push_str(&line[j..=q]);
                            j = q + 2;
                        } else {
                            let field = match owned {
                                Some(mut s) => {
                                    s.push_str(&line[j..q]);
                                    Cow::Owned(s)
                                }
                                None => Cow::Borrowed(&line[start..q]),
                            };
                            out.push(field);
                            i = q + 1;
                            break;
                        }
                    }
                }
            }
            match bytes.get(i) {
                None => return Ok(()),
                Some(&b) if b == sep => i += 1,
                Some(_) => {
                    return Err(format!(
                        "unexpected character after quoted field at column {}",
                        i + 1
                    ));
                }
            }
        } else {
            let end = bytes[i..].iter().position(|&b| b == sep).map(|p| i + p);
            match end {
                Some(e) => {
                    out.push(Cow::Borrowed(&line[i..e]));
                    i = e + 1;
                }
                None => {
                    out.push(Cow::Borrowed(&line[i..]));
                    return Ok(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> Vec<String> {
        let mut v = Vec::new();
        split_csv(s, b',', &mut v).unwrap();
        v.into_iter().map(|c| c.into_owned()).collect()
    }

    #[test]
    fn csv_quotes() {
        assert_eq!(split("1,a,b"), ["1", "a", "b"]);
        assert_eq!(
            split("11,\"President, The (1995)\",Comedy"),
            ["11", "President, The (1995)", "Comedy"]
        );
        assert_eq!(split("1,\"say \"\"hi\"\"\",x"), ["1", "say \"hi\"", "x"]);
        assert_eq!(split("1,,x"), ["1", "", "x"]);
        assert_eq!(split("\"a\""), ["a"]);
        assert_eq!(split("a,"), ["a", ""]);
        let mut v = Vec::new();
        assert!(split_csv("1,\"open", b',', &mut v).is_err());
    }
}
