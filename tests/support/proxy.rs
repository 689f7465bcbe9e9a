//! A TCP proxy on loopback that can be paused: while paused it drops every connection, so the
//! node behind it is cut off from Raft traffic (a network partition of one node).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

pub struct Proxy {
    pub port: u16,
    paused: Arc<AtomicBool>,
    cut: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target_port: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy bind");
        let port = listener.local_addr().expect("proxy addr").port();
        let paused = Arc::new(AtomicBool::new(false));
        let cut = Arc::new(Notify::new());
        let (paused_loop, cut_loop) = (paused.clone(), cut.clone());
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if paused_loop.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let cut = cut_loop.clone();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(("127.0.0.1", target_port)).await else {
                        return;
                    };
                    let (mut a, mut b) = (inbound, outbound);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut a, &mut b) => {}
                        _ = cut.notified() => {}
                    }
                });
            }
        });
        Proxy {
            port,
            paused,
            cut,
            task,
        }
    }

    /// Drops current connections and refuses new ones.
    pub fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
        self.cut.notify_waiters();
    }

    pub fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
