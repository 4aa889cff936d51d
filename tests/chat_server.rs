//! The `chat` example's server (`examples::servers::chat`, the code the
//! example runs) on this runtime, with clients on plain
//! `std::net::TcpStream`s in another thread: names, joins and leaves,
//! lines going to every other client and never back to the sender, and
//! the line-length limit.
//!
//! "Not echoed" is checked by order, never by waiting for silence: the
//! room is one channel, so every client gets its messages in the order
//! they were said; when a client's next line is what someone said after
//! it, its own line did not come back.

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use examples::servers::chat;
use integration_tests::on_runtime;

const LIMIT: Duration = Duration::from_secs(120);

/// How long a client waits for a line before failing.
const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// Serves the chat room on this runtime while `clients` runs on its own
/// thread with the server's address; returns what `clients` returns.
async fn with_server<T: Send + 'static>(
    clients: impl FnOnce(SocketAddr) -> T + Send + 'static,
) -> T {
    let listener = net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = runtime::spawn(chat::serve(listener));
    let out = runtime::spawn_blocking(move || clients(addr))
        .await
        .unwrap();
    server.abort();
    out
}

/// One chat client.
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    /// Connects and reads the greeting, without saying a name yet.
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut client = Client {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        };
        assert_eq!(client.line(), "* welcome! your name?");
        client
    }

    /// Connects, says its name and reads the server's hello.
    fn join(addr: SocketAddr, name: &str) -> Client {
        let mut client = Client::connect(addr);
        client.send(name);
        assert_eq!(client.line(), format!("* hello {name}"));
        client
    }

    fn send(&mut self, line: &str) {
        self.writer.write_all(line.as_bytes()).unwrap();
        self.writer.write_all(b"\n").unwrap();
    }

    /// The next line, without its `\n`; fails at end of stream.
    fn line(&mut self) -> String {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .unwrap_or_else(|e| panic!("no line from the server: {e}"));
        assert!(n > 0, "the server closed the connection");
        assert!(line.ends_with('\n'), "a partial line: {line:?}");
        line.pop();
        line
    }

    /// Reads to the end of the stream (the server closed it).
    fn expect_closed(&mut self) {
        let mut rest = String::new();
        match std::io::Read::read_to_string(&mut self.reader, &mut rest) {
            Ok(_) => assert_eq!(rest, "", "more lines before the close"),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("the connection was not closed: {e}"),
        }
    }

    fn leave(self) {
        self.writer.shutdown(Shutdown::Both).unwrap();
    }
}

#[test]
fn three_clients_hear_each_other_but_not_themselves() {
    on_runtime(LIMIT, || {
        with_server(|addr| {
            let mut alice = Client::join(addr, "alice");
            let mut bob = Client::join(addr, "bob");
            assert_eq!(alice.line(), "* bob joined");
            let mut carol = Client::join(addr, "carol");
            assert_eq!(alice.line(), "* carol joined");
            assert_eq!(bob.line(), "* carol joined");

            alice.send("hi all");
            assert_eq!(bob.line(), "alice: hi all");
            assert_eq!(carol.line(), "alice: hi all");
            // Said after alice's line reached the others: if alice got her
            // own line back, it would come before this one.
            bob.send("hi alice");
            assert_eq!(alice.line(), "bob: hi alice");
            assert_eq!(carol.line(), "bob: hi alice");

            // A line split across writes, and a CRLF line (telnet's).
            carol.writer.write_all(b"split ").unwrap();
            carol.writer.flush().unwrap();
            carol.writer.write_all(b"line\r\n").unwrap();
            assert_eq!(alice.line(), "carol: split line");
            assert_eq!(bob.line(), "carol: split line");
            alice.send("seen");
            assert_eq!(bob.line(), "alice: seen");
            assert_eq!(carol.line(), "alice: seen");

            carol.leave();
            assert_eq!(alice.line(), "* carol left");
            assert_eq!(bob.line(), "* carol left");

            // The room goes on without carol.
            bob.send("just us");
            assert_eq!(alice.line(), "bob: just us");
            alice.send("yes");
            assert_eq!(bob.line(), "alice: yes");
            bob.leave();
            assert_eq!(alice.line(), "* bob left");
        })
    });
}

#[test]
fn many_lines_arrive_in_order() {
    on_runtime(LIMIT, || {
        with_server(|addr| {
            let mut listener = Client::join(addr, "ear");
            let mut talker = Client::join(addr, "mouth");
            assert_eq!(listener.line(), "* mouth joined");
            // Well within the room's backlog: nothing is missed.
            let lines: Vec<String> = (0..500)
                .map(|i| format!("line {i} {}", "x".repeat(i)))
                .collect();
            let mut batch = String::new();
            for line in &lines {
                batch.push_str(line);
                batch.push('\n');
            }
            // All in one write: the server reads many lines per read.
            talker.writer.write_all(batch.as_bytes()).unwrap();
            for line in &lines {
                assert_eq!(listener.line(), format!("mouth: {line}"));
            }
            listener.send("done");
            assert_eq!(talker.line(), "ear: done");
        })
    });
}

#[test]
fn a_client_without_a_name_is_called_by_its_address() {
    on_runtime(LIMIT, || {
        with_server(|addr| {
            let mut alice = Client::join(addr, "alice");
            let mut anon = Client::connect(addr);
            let me = anon.writer.local_addr().unwrap().to_string();
            anon.send("   ");
            assert_eq!(anon.line(), format!("* hello {me}"));
            assert_eq!(alice.line(), format!("* {me} joined"));
            let mut long = Client::connect(addr);
            let me_too = long.writer.local_addr().unwrap().to_string();
            long.send(&"n".repeat(chat::MAX_NAME + 1));
            assert_eq!(long.line(), format!("* hello {me_too}"));
            assert_eq!(alice.line(), format!("* {me_too} joined"));
            anon.send("who am I?");
            assert_eq!(alice.line(), format!("{me}: who am I?"));
            assert_eq!(long.line(), format!("{me}: who am I?"));
        })
    });
}

#[test]
fn a_line_over_the_limit_ends_that_client_only() {
    on_runtime(LIMIT, || {
        with_server(|addr| {
            let mut alice = Client::join(addr, "alice");
            let mut mallory = Client::join(addr, "mallory");
            assert_eq!(alice.line(), "* mallory joined");
            // Exactly the limit is fine.
            let at_limit = "a".repeat(chat::MAX_LINE);
            mallory.send(&at_limit);
            assert_eq!(alice.line(), format!("mallory: {at_limit}"));
            // One byte more is not: the server says so, closes, and the
            // others hear that mallory left.
            mallory.send(&"b".repeat(chat::MAX_LINE + 1));
            assert_eq!(mallory.line(), "* line too long, bye");
            mallory.expect_closed();
            assert_eq!(alice.line(), "* mallory left");
            // A name over the line limit: refused before joining, so
            // nobody hears of it.
            let mut huge = Client::connect(addr);
            huge.send(&"c".repeat(chat::MAX_LINE + 1));
            assert_eq!(huge.line(), "* line too long, bye");
            huge.expect_closed();
            let mut bob = Client::join(addr, "bob");
            assert_eq!(alice.line(), "* bob joined");
            bob.send("hello");
            assert_eq!(alice.line(), "bob: hello");
        })
    });
}
