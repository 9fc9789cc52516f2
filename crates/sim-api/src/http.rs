//! Just enough HTTP/1.1 for an OpenAI client: keep-alive, `Content-Length` bodies, and
//! direct control of the socket so faults can drop a connection or cut a body short. Public so
//! the harness's loopback endpoint for external methods speaks the same subset.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MAX_HEAD: usize = 64 * 1024;
/// A batch input file may hold 200 MB; its multipart upload a little more.
const MAX_BODY: usize = 256 * 1024 * 1024;
/// An idle keep-alive connection is closed after this; clients pool for less (reqwest: 90 s).
const IDLE: Duration = Duration::from_secs(300);

pub struct Request {
    pub method: String,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// Without the query string.
    pub path: String,
    pub body: Vec<u8>,
    pub keep_alive: bool,
}

/// Why no request could be read.
pub enum ReadError {
    /// The peer closed the connection, cleanly between requests or part-way through one.
    Closed,
    /// A request we will not serve; answer with this status and close.
    Reject(u16, &'static str),
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(status: u16, body: &serde_json::Value) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: body.to_string().into_bytes(),
        }
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    fn head(&self, keep_alive: bool) -> Vec<u8> {
        let mut h = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            self.status,
            reason(self.status),
            self.body.len()
        );
        for (k, v) in &self.headers {
            h.push_str(&format!("{k}: {v}\r\n"));
        }
        if !keep_alive {
            h.push_str("connection: close\r\n");
        }
        h.push_str("\r\n");
        h.into_bytes()
    }
}

pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// One client connection; `buf` keeps bytes read past the current request (pipelining).
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    /// Reads more bytes into `buf`; false when the peer has closed (or gone idle too long).
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match tokio::time::timeout(IDLE, self.stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            _ => false,
        }
    }

    pub async fn read_request(&mut self) -> Result<Request, ReadError> {
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i;
            }
            if self.buf.len() > MAX_HEAD {
                return Err(ReadError::Reject(431, "request head too large"));
            }
            if !self.fill().await {
                return Err(ReadError::Closed);
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        self.buf.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let mut first = lines.next().unwrap_or("").split_whitespace();
        let (Some(method), Some(target), Some(version)) =
            (first.next(), first.next(), first.next())
        else {
            return Err(ReadError::Reject(400, "malformed request line"));
        };
        let mut content_length = 0usize;
        let mut connection = String::new();
        let mut expect_continue = false;
        let mut headers = Vec::new();
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                return Err(ReadError::Reject(400, "malformed header line"));
            };
            let value = value.trim();
            headers.push((name.trim().to_ascii_lowercase(), value.to_string()));
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => {
                    content_length = value
                        .parse()
                        .map_err(|_| ReadError::Reject(400, "bad content-length"))?;
                }
                // Chunked uploads are not needed by any OpenAI client; refusing them keeps
                // the body framing trivial.
                "transfer-encoding" => {
                    return Err(ReadError::Reject(411, "send a Content-Length body"));
                }
                "connection" => connection = value.to_ascii_lowercase(),
                "expect" => expect_continue = value.eq_ignore_ascii_case("100-continue"),
                _ => {}
            }
        }
        if content_length > MAX_BODY {
            return Err(ReadError::Reject(413, "request body too large"));
        }
        if expect_continue && self.buf.len() < content_length {
            let _ = self
                .stream
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await;
        }
        while self.buf.len() < content_length {
            if !self.fill().await {
                return Err(ReadError::Closed);
            }
        }
        let body: Vec<u8> = self.buf.drain(..content_length).collect();
        let keep_alive = if version.eq_ignore_ascii_case("HTTP/1.0") {
            connection.contains("keep-alive")
        } else {
            !connection.contains("close")
        };
        let path = target.split('?').next().unwrap_or("").to_string();
        Ok(Request {
            method: method.to_string(),
            headers,
            path,
            body,
            keep_alive,
        })
    }

    pub async fn send(&mut self, resp: &Response, keep_alive: bool) -> std::io::Result<()> {
        let mut bytes = resp.head(keep_alive);
        bytes.extend_from_slice(&resp.body);
        self.stream.write_all(&bytes).await?;
        self.stream.flush().await
    }

    /// Sends the head (promising the full length) and half the body, then the caller drops
    /// the connection: the client sees a body cut off mid-way.
    pub async fn send_cut(&mut self, resp: &Response) -> std::io::Result<()> {
        let mut bytes = resp.head(true);
        bytes.extend_from_slice(&resp.body[..resp.body.len() / 2]);
        self.stream.write_all(&bytes).await?;
        self.stream.flush().await
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
