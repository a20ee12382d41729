//! What a service writes its response into, and how it fails.

/// A failed request: its message is sent to the client as an ERROR frame,
/// in the request's place, and the connection stays open for the next
/// request. The message is for the client (the server does not log it);
/// in line framing it travels as `ERROR <message>` on one line, so any `\n`
/// in it becomes a space.
///
/// `From<&str>` and `From<String>` let `?` and `.into()` make one, which
/// keeps a service's error handling short:
///
/// ```
/// use wharf::{Response, ServiceError};
///
/// /// Doubles a decimal number.
/// fn double(request: &[u8], response: &mut Response<'_>) -> Result<(), ServiceError> {
///     let text = std::str::from_utf8(request).map_err(|_| "request is not UTF-8")?;
///     let n: u64 = text.parse().map_err(|e| format!("{text:?} is not a number: {e}"))?;
///     let doubled = n.checked_mul(2).ok_or("too large to double")?;
///     response.extend_from_slice(doubled.to_string().as_bytes());
///     Ok(())
/// }
///
/// // A service can be called directly, without a server (in a unit test,
/// // say), with a `Response` over a buffer of one's own.
/// let mut out = Vec::new();
/// double(b"21", &mut Response::new(&mut out))?;
/// assert_eq!(out, b"42");
/// let e = double(b"x", &mut Response::new(&mut out)).unwrap_err();
/// assert_eq!(e.to_string(), "\"x\" is not a number: invalid digit found in string");
/// # Ok::<(), ServiceError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ServiceError(pub String);

impl From<&str> for ServiceError {
    fn from(message: &str) -> Self {
        ServiceError(message.to_owned())
    }
}

impl From<String> for ServiceError {
    fn from(message: String) -> Self {
        ServiceError(message)
    }
}

/// Where a service writes its response: an append-only view of the worker's
/// output buffer, so a response goes to the socket without an extra copy.
///
/// The view starts where the response starts: whatever the buffer held
/// before (earlier replies on their way out) can be neither read nor
/// changed through it, and [`clear`](Response::clear) discards only what
/// this response wrote. It implements [`std::io::Write`], so `write!` and
/// anything that writes to a writer (a serializer, say) can fill it.
///
/// ```
/// use std::io::Write;
/// use wharf::Response;
///
/// let mut buf = b"earlier replies".to_vec();
/// let mut response = Response::new(&mut buf);
/// write!(response, "{} + {} = {}", 1, 2, 1 + 2)?;
/// assert_eq!(response.as_slice(), b"1 + 2 = 3");
/// response.clear();
/// assert!(response.is_empty());
/// assert_eq!(buf, b"earlier replies");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Response<'a> {
    buf: &'a mut Vec<u8>,
    start: usize,
}

impl<'a> Response<'a> {
    /// A response that appends to `buf` after its current contents. The
    /// server makes one per DATA request; this is for calling a service
    /// directly, in a unit test for example.
    pub fn new(buf: &'a mut Vec<u8>) -> Self {
        let start = buf.len();
        Response { buf, start }
    }

    /// Appends bytes to the response.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The response written so far.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Whether nothing has been written yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Discards what this response has written so far (and nothing the
    /// buffer held before it), to start the response again.
    pub fn clear(&mut self) {
        self.buf.truncate(self.start);
    }
}

impl std::io::Write for Response<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
