//! Sending requests from another thread than the one that receives.

use std::sync::Arc;

use parking_lot::Mutex;

use super::writer::{check_request, Pending, Writer};
use super::ClientError;
use crate::frame::{self, Framing};

/// Sends requests on a [`Client`](crate::client::Client)'s connection from another thread; the
/// replies arrive through [`Client::recv`](crate::client::Client::recv), in order.
///
/// For a producer that should not wait for replies: one thread sends while
/// the client's thread receives, over the same connection. Senders and the
/// client share one lock for writing, so a request is written and recorded
/// as owed in one step, and the order of replies is the order requests
/// were sent, whoever sent them. Get one with [`Client::sender`](crate::client::Client::sender); it is
/// cheap to clone.
///
/// ```
/// use std::thread;
/// use wharf::{Client, ClientOptions, Config, Echo, Reply, Server};
///
/// let config = Config { workers: 2, ..Config::default() };
/// let server = Server::start("127.0.0.1:0", config, Echo::default())?;
/// let mut client = Client::connect(server.local_addr(), ClientOptions::default())?;
///
/// let sender = client.sender();
/// let producer = thread::spawn(move || -> Result<(), wharf::ClientError> {
///     for i in 0..100 {
///         sender.request(format!("request {i}").as_bytes())?;
///     }
///     // Nothing more to send: the server answers the rest, then closes.
///     sender.shutdown_write()
/// });
/// for i in 0..100 {
///     assert_eq!(client.recv()?, Reply::Data(format!("request {i}").into_bytes()));
/// }
/// producer.join().unwrap()?;
///
/// drop(client);
/// server.handle().shutdown();
/// assert_eq!(server.join().data_requests, 100);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct RequestSender {
    pub(super) writer: Arc<Mutex<Writer>>,
    pub(super) framing: Framing,
}

impl RequestSender {
    /// Sends one DATA request at once. With retries on, a failed write is
    /// not reported here: the request stays owed and the receiving
    /// [`Client::recv`](crate::client::Client::recv) resends it after a reconnect, or returns why it
    /// could not (after which this fails).
    pub fn request(&self, payload: &[u8]) -> Result<(), ClientError> {
        check_request(self.framing, payload)?;
        let mut writer = self.writer.lock();
        writer.queue(self.framing, frame::DATA, payload, Pending::Data);
        Ok(writer.flush()?)
    }

    /// Shuts down the sending side: the server answers every request it
    /// has, then closes the connection.
    /// The background heartbeat, if any, stops sending too.
    pub fn shutdown_write(&self) -> Result<(), ClientError> {
        Ok(self.writer.lock().shutdown()?)
    }
}
