//! Raw HTTP bytes against the embedding server: one server (the tiny model, short header and
//! body timeouts) for the process, one connection per input. Whatever the bytes, the server
//! must not panic (libFuzzer's panic hook aborts on a panic in any thread, the server's tasks
//! included), and what it sends back, if anything, is an HTTP/1.x response.
#![no_main]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use sbert::{Device, SentenceEmbedder};
use sbert_server::{serve, ServerConfig};

/// The server's address, started once on a runtime of its own.
fn server() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                tx.send(listener.local_addr().expect("addr")).expect("send");
                let config = ServerConfig {
                    model_id: "tiny".into(),
                    max_client_batch_size: 8,
                    max_body_bytes: 64 * 1024,
                    header_timeout: Duration::from_millis(50),
                    body_timeout: Duration::from_millis(50),
                    request_timeout: Duration::from_secs(5),
                    ..ServerConfig::default()
                };
                let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../models/tiny"));
                serve(
                    listener,
                    config,
                    move || SentenceEmbedder::from_dir(dir, &Device::Cpu),
                    std::future::pending::<()>(),
                )
                .await
                .expect("the server runs until the process ends");
            });
        });
        let addr = rx.recv().expect("the server's address");
        // Until the model is loaded the routes answer 503; wait for it so inputs reach them.
        for _ in 0..500 {
            if let Ok(mut s) = TcpStream::connect(addr) {
                let _ =
                    s.write_all(b"GET /health HTTP/1.1\r\nhost: f\r\nconnection: close\r\n\r\n");
                let mut reply = Vec::new();
                let _ = s.read_to_end(&mut reply);
                if reply.starts_with(b"HTTP/1.1 200") {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        addr
    })
}

fuzz_target!(|data: &[u8]| {
    let addr = server();
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    // The server may answer (400, 413) and close before reading everything: write errors are
    // part of the exchange.
    let _ = stream.write_all(data);
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    // HTTP/1.0 requests are answered in HTTP/1.0.
    assert!(
        reply.is_empty() || reply.starts_with(b"HTTP/1.1 ") || reply.starts_with(b"HTTP/1.0 "),
        "not an HTTP/1.x response: {:?}",
        String::from_utf8_lossy(&reply[..reply.len().min(200)])
    );
});
