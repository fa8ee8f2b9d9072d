//! Finding the end of a chunked body (RFC 9112 §7.1) as it streams through, without
//! decoding it: the bytes are forwarded as they came, chunk sizes, extensions and trailers
//! included, and the scanner only says how many of them belong to the body.
//!
//! Strict where hyper's decoder is strict: CRLF line ends, hex sizes that fit in 64 bits,
//! no bare LF in an extension; extensions and trailers bounded in size.

/// Most bytes of chunk extensions and of the trailer section accepted in one body (hyper
/// bounds extensions the same way).
const MAX_OVERHEAD: u64 = 16 * 1024;

/// Where the scanner is in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the hex size; `digits` so far.
    Size {
        value: u64,
        digits: u8,
    },
    /// Blanks after the size, before `;` or CR.
    SizeBlank {
        value: u64,
    },
    /// A chunk extension, up to CR.
    Ext {
        value: u64,
    },
    /// The LF ending the size line.
    SizeLf {
        value: u64,
    },
    /// Chunk data still to pass.
    Data(u64),
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final CRLF).
    TrailerStart,
    TrailerLine,
    TrailerLf,
    EndLf,
    Done,
}

/// A malformed chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed chunked body")]
pub struct Malformed;

/// Scans a chunked body fed in pieces.
#[derive(Debug, Clone)]
pub struct ChunkedScan {
    state: State,
    overhead: u64,
}

impl Default for ChunkedScan {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedScan {
    pub fn new() -> Self {
        Self { state: State::Size { value: 0, digits: 0 }, overhead: 0 }
    }

    /// Whether the whole body, trailers and final CRLF included, has been seen.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Takes the next bytes of the body; returns how many of them belong to it (all of
    /// them, unless the body ends inside `buf`).
    pub fn feed(&mut self, buf: &[u8]) -> Result<usize, Malformed> {
        let mut i = 0;
        while i < buf.len() {
            if let State::Data(left) = self.state {
                let take = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len() - i);
                i += take;
                let left = left - take as u64;
                self.state = if left == 0 { State::DataCr } else { State::Data(left) };
                continue;
            }
            let b = buf[i];
            self.state = self.step(b)?;
            i += 1;
            if self.state == State::Done {
                break;
            }
        }
        Ok(i)
    }

    fn step(&mut self, b: u8) -> Result<State, Malformed> {
        Ok(match self.state {
            State::Size { value, digits } => match b {
                b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                    if digits >= 16 {
                        return Err(Malformed);
                    }
                    let d = (b as char).to_digit(16).ok_or(Malformed)?;
                    State::Size { value: value << 4 | u64::from(d), digits: digits + 1 }
                }
                _ if digits == 0 => return Err(Malformed),
                b'\r' => State::SizeLf { value },
                b';' => self.ext(value)?,
                b' ' | b'\t' => State::SizeBlank { value },
                _ => return Err(Malformed),
            },
            State::SizeBlank { value } => match b {
                b' ' | b'\t' => State::SizeBlank { value },
                b'\r' => State::SizeLf { value },
                b';' => self.ext(value)?,
                _ => return Err(Malformed),
            },
            State::Ext { value } => match b {
                b'\r' => State::SizeLf { value },
                b'\n' => return Err(Malformed),
                _ => self.ext(value)?,
            },
            State::SizeLf { value } => match (b, value) {
                (b'\n', 0) => State::TrailerStart,
                (b'\n', n) => State::Data(n),
                _ => return Err(Malformed),
            },
            State::DataCr => match b {
                b'\r' => State::DataLf,
                _ => return Err(Malformed),
            },
            State::DataLf => match b {
                b'\n' => State::Size { value: 0, digits: 0 },
                _ => return Err(Malformed),
            },
            State::TrailerStart => match b {
                b'\r' => State::EndLf,
                b'\n' => return Err(Malformed),
                _ => self.trailer()?,
            },
            State::TrailerLine => match b {
                b'\r' => State::TrailerLf,
                b'\n' => return Err(Malformed),
                _ => self.trailer()?,
            },
            State::TrailerLf => match b {
                b'\n' => State::TrailerStart,
                _ => return Err(Malformed),
            },
            State::EndLf => match b {
                b'\n' => State::Done,
                _ => return Err(Malformed),
            },
            State::Data(_) | State::Done => return Err(Malformed),
        })
    }

    fn ext(&mut self, value: u64) -> Result<State, Malformed> {
        self.count()?;
        Ok(State::Ext { value })
    }

    fn trailer(&mut self) -> Result<State, Malformed> {
        self.count()?;
        Ok(State::TrailerLine)
    }

    fn count(&mut self) -> Result<(), Malformed> {
        self.overhead += 1;
        if self.overhead > MAX_OVERHEAD {
            return Err(Malformed);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `body` split at every pair of points; every split must agree with the whole.
    fn scan_split(body: &[u8]) -> Result<Option<usize>, Malformed> {
        let whole = {
            let mut s = ChunkedScan::new();
            let n = s.feed(body)?;
            s.is_done().then_some(n)
        };
        for a in 0..=body.len() {
            for b in a..=body.len() {
                let mut s = ChunkedScan::new();
                let mut used = 0;
                for piece in [&body[..a], &body[a..b], &body[b..]] {
                    if s.is_done() {
                        break;
                    }
                    used += s.feed(piece)?;
                }
                assert_eq!(s.is_done().then_some(used), whole, "split at {a},{b}");
            }
        }
        Ok(whole)
    }

    #[test]
    fn finds_the_end_of_well_formed_bodies() {
        let cases: [&[u8]; 6] = [
            b"0\r\n\r\n",
            b"5\r\nhello\r\n0\r\n\r\n",
            b"5;name=value\r\nhello\r\n000\r\n\r\n",
            b"A\r\n0123456789\r\n3 ;x\r\nabc\r\n0\r\nExpires: never\r\nX-Sum: 1\r\n\r\n",
            b"1\r\n\n\r\n0 \r\n\r\n",
            b"ff\r\n",
        ];
        for body in cases {
            let end = scan_split(body).unwrap();
            if body.starts_with(b"ff") {
                assert_eq!(end, None, "incomplete body");
            } else {
                assert_eq!(end, Some(body.len()), "{:?}", String::from_utf8_lossy(body));
            }
        }
    }

    #[test]
    fn stops_at_the_end_and_leaves_what_follows() {
        let mut s = ChunkedScan::new();
        let n = s.feed(b"3\r\nabc\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n").unwrap();
        assert!(s.is_done());
        assert_eq!(n, b"3\r\nabc\r\n0\r\n\r\n".len());
    }

    #[test]
    fn refuses_malformed_bodies() {
        let cases: [&[u8]; 10] = [
            b"\r\n",
            b"x\r\n",
            b"5\nhello\r\n",
            b"5\r\nhelloX\r\n",
            b"5\r\nhello\r\r",
            b"5;a\nb\r\n",
            b"11111111111111111\r\n",
            b"0\r\nbad\ntrailer\r\n\r\n",
            b"0\r\n\n",
            b"5 x\r\n",
        ];
        for body in cases {
            assert_eq!(scan_split(body), Err(Malformed), "{:?}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn bounds_extensions_and_trailers() {
        let mut body = b"1;".to_vec();
        body.extend(std::iter::repeat_n(b'a', MAX_OVERHEAD as usize + 1));
        assert_eq!(ChunkedScan::new().feed(&body), Err(Malformed));
        let mut body = b"0\r\n".to_vec();
        body.extend(std::iter::repeat_n(b'a', MAX_OVERHEAD as usize + 1));
        assert_eq!(ChunkedScan::new().feed(&body), Err(Malformed));
    }

    #[test]
    fn large_sizes_pass_data_in_one_step() {
        let mut s = ChunkedScan::new();
        assert_eq!(s.feed(b"ffffffff\r\n").unwrap(), 10);
        assert_eq!(s.feed(&[0u8; 4096]).unwrap(), 4096);
        assert!(!s.is_done());
    }
}
