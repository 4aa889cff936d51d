//! The `chat` example's server: a line-based chat room.
//!
//! The protocol, one line (`\n`, optionally `\r\n`) at a time:
//!
//! 1. The server greets a new client with `* welcome! your name?`.
//! 2. The client's first line is its name (trimmed; an empty one, or one
//!    longer than [`MAX_NAME`] bytes, gives the client its address as its
//!    name). The server answers `* hello NAME` and tells everyone else
//!    `* NAME joined`.
//! 3. Every later line goes to every other client as `NAME: line`; the
//!    sender does not get its own lines back.
//! 4. When the client leaves (end of stream, an error, or a line longer
//!    than [`MAX_LINE`] bytes, which the server refuses with
//!    `* line too long, bye`), the others get `* NAME left`.
//!
//! A client too slow to keep up with the room is told how many messages it
//! missed (`* missed N messages`) rather than holding the others back.
//!
//! The connection is tokio-util's [`Framed`] with a [`LinesCodec`] over
//! `net::TcpStream` (net's `tokio-io` feature: tokio's `AsyncRead` and
//! `AsyncWrite`), and the room is a [`tokio::sync::broadcast`] channel:
//! tokio's channels are runtime-agnostic (they need no tokio runtime, only
//! a waker), so they work on this one as they are.

use std::net::{Shutdown, SocketAddr};
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{select, Either};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::codec::{Framed, LinesCodec, LinesCodecError};

/// The longest line a client may send, in bytes.
pub const MAX_LINE: usize = 8 * 1024;

/// The longest name a client may choose, in bytes.
pub const MAX_NAME: usize = 32;

/// How long a refused client's input is still read (and dropped) after
/// the goodbye; see [`refuse`].
const LINGER: Duration = Duration::from_secs(2);

/// How many messages the room keeps for its slowest reader before that
/// reader starts missing some.
const BACKLOG: usize = 1024;

/// One message to the room.
#[derive(Clone, Debug)]
struct Message {
    /// The id of the client that sent it (which does not get it back).
    from: u64,
    /// The whole line, as the others get it.
    line: Arc<str>,
}

/// The room: whatever a client sends, the others get.
#[derive(Clone, Debug)]
pub struct Room {
    tx: broadcast::Sender<Message>,
}

impl Default for Room {
    fn default() -> Room {
        Room::new()
    }
}

impl Room {
    /// An empty room.
    pub fn new() -> Room {
        Room {
            tx: broadcast::channel(BACKLOG).0,
        }
    }

    fn say(&self, from: u64, line: String) {
        // An error means nobody is listening: nothing to do.
        let _ = self.tx.send(Message {
            from,
            line: line.into(),
        });
    }
}

/// Serves the room on every connection `listener` accepts, each on its own
/// task of the current runtime; never returns.
pub async fn serve(listener: net::TcpListener) {
    let room = Room::new();
    let mut id = 0u64;
    loop {
        let (stream, peer) = crate::accept(&listener, "chat").await;
        id += 1;
        runtime::spawn(client(room.clone(), id, stream, peer));
    }
}

/// One client's whole session: its name, then its lines out and the
/// room's lines in, until it leaves. `id` must be unique in the room.
pub async fn client(room: Room, id: u64, stream: net::TcpStream, peer: SocketAddr) {
    {
        let mut conn = Framed::new(stream, LinesCodec::new_with_max_length(MAX_LINE));
        if conn.send("* welcome! your name?").await.is_err() {
            return;
        }
        let name = match conn.next().await {
            Some(Ok(line)) => {
                let name = line.trim();
                if name.is_empty() || name.len() > MAX_NAME {
                    peer.to_string()
                } else {
                    name.to_string()
                }
            }
            Some(Err(LinesCodecError::MaxLineLengthExceeded)) => {
                refuse(&mut conn).await;
                return;
            }
            // Gone before saying who it is: nobody was told it came.
            Some(Err(LinesCodecError::Io(_))) | None => return,
        };
        // Subscribed before the others hear of it: whoever sees the join
        // can be sure the newcomer gets what they say next.
        let mut rx = room.tx.subscribe();
        room.say(id, format!("* {name} joined"));
        let mut ok = conn.send(format!("* hello {name}")).await.is_ok();
        let mut too_long = false;
        while ok {
            // Whichever comes first: a line from the client, or one from
            // the room. Both waits can be dropped unfinished without
            // losing anything (`Framed` keeps what it has read; the
            // channel keeps the message for the next `recv`).
            let event = match select(conn.next(), pin!(rx.recv())).await {
                Either::Left((line, _)) => Either::Left(line),
                Either::Right((message, _)) => Either::Right(message),
            };
            ok = match event {
                Either::Left(Some(Ok(line))) => {
                    room.say(id, format!("{name}: {line}"));
                    true
                }
                Either::Left(Some(Err(LinesCodecError::MaxLineLengthExceeded))) => {
                    too_long = true;
                    false
                }
                Either::Left(Some(Err(LinesCodecError::Io(_))) | None) => false,
                Either::Right(Ok(message)) if message.from == id => true,
                Either::Right(Ok(message)) => conn.send(&*message.line).await.is_ok(),
                Either::Right(Err(RecvError::Lagged(n))) => {
                    conn.send(format!("* missed {n} messages")).await.is_ok()
                }
                // The room outlives every client (`room` holds a sender).
                Either::Right(Err(RecvError::Closed)) => false,
            };
        }
        room.say(id, format!("* {name} left"));
        if too_long {
            refuse(&mut conn).await;
        }
    }
}

/// Says goodbye to a client that sent a line over [`MAX_LINE`], and closes
/// its connection without losing the goodbye.
///
/// Closing a socket that still has unread input makes the kernel answer
/// with a reset rather than an end of stream, and a reset can discard the
/// goodbye before the client reads it; and the rest of the long line may
/// well be unread. So the server ends its side first, then reads and drops
/// whatever the client still sends, until the client closes too or
/// [`LINGER`] has passed.
async fn refuse(conn: &mut Framed<net::TcpStream, LinesCodec>) {
    if conn.send("* line too long, bye").await.is_err() {
        return;
    }
    let _ = conn.get_ref().shutdown(Shutdown::Write);
    let drain = async {
        // After a line too long the codec skips to the next newline.
        while let Some(Ok(_) | Err(LinesCodecError::MaxLineLengthExceeded)) = conn.next().await {}
    };
    let _ = runtime::time::timeout(LINGER, drain).await;
}
