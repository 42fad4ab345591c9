//! triesync-peer: the reference peer. It serves the trie nodes and contract codes of a state
//! by their keccak256 hash over HTTP (`POST /v1/nodes`), WebSocket (`GET /v1/ws`) and
//! geth-style JSON-RPC (`debug_dbGet` on `POST /`), with seeded faults on purpose. The wire
//! contract is PROTOCOL.md at the repository root.
#![warn(missing_docs)]

pub mod app;
pub mod cli;
pub mod faults;
pub mod rlpx;
pub mod rpc;
pub mod server;
pub mod ws;

use app::{App, LogLevel, ServedState};
use cli::{Options, Source};
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};
use triesync_core::state::StateFixture;
use triesync_core::synthetic::build_synthetic;

/// Builds the state a source names, with its display name.
pub fn build(source: &Source) -> Result<ServedState, String> {
    match source {
        Source::State(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("reading {path}: {e}"))?;
            let fixture = StateFixture::from_json(&text).map_err(|e| format!("{path}: {e}"))?;
            let built = fixture.build().map_err(|e| format!("{path}: {e}"))?;
            if let Ok(expected) = fixture.root() {
                if expected != built.root {
                    return Err(format!(
                        "{path}: built root {} differs from the stateRoot {} it publishes",
                        built.root, expected
                    ));
                }
            }
            Ok(ServedState::new(built, fixture.name.clone()))
        }
        Source::Synthetic(spec) => {
            let name = format!(
                "synthetic-{}-c{}-s{}-b{}-d{}-seed{}",
                spec.accounts,
                spec.contracts,
                spec.slots_per_contract,
                spec.code_size,
                spec.distinct_codes,
                spec.seed
            );
            Ok(ServedState::new(build_synthetic(spec), name))
        }
    }
}

/// Connections the kernel queues before `accept` (the system caps it at
/// `net.core.somaxconn`). Tokio's `bind` asks for 128, which a burst of a few hundred
/// clients overflows: their SYNs are dropped and they wait out TCP's retransmission backoff
/// (1 s, then 3 s) before the server even sees them.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds `host:port` (the first address it resolves to that binds) with [`LISTEN_BACKLOG`].
pub async fn bind(host: &str, port: u16) -> std::io::Result<tokio::net::TcpListener> {
    let mut last = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        let socket = match addr {
            std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        // As std and tokio do: a restarted server can bind while old connections linger.
        socket.set_reuseaddr(true)?;
        match socket
            .bind(addr)
            .and_then(|()| socket.listen(LISTEN_BACKLOG))
        {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other(format!("{host} resolves to no address"))))
}

/// Builds the state, binds, prints the `listening` line and serves until SIGINT, SIGTERM
/// or (with `--exit-on-stdin-close`) the end of standard input.
pub fn run(opts: Options) -> Result<(), String> {
    let t0 = Instant::now();
    let mut state = build(&opts.source)?;
    if let Some(n) = &opts.name {
        state = ServedState::new(std::mem::take(&mut state.built), n.clone());
    }
    let build_time = t0.elapsed();
    let app = Arc::new(App::new(
        state,
        opts.faults.clone(),
        opts.limits.clone(),
        opts.log,
    ));
    app.log(LogLevel::Info, || {
        let b = &app.state.built;
        format!(
            "built {} in {:.2}s: root {} accounts {} nodes {} ({} bytes) codes {} ({} bytes)",
            app.state.name,
            build_time.as_secs_f64(),
            b.root,
            b.accounts,
            b.nodes.len(),
            b.node_bytes(),
            b.codes.len(),
            b.code_bytes()
        )
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    rt.block_on(async move {
        let listener = bind(&opts.host, opts.port)
            .await
            .map_err(|e| format!("binding {}:{}: {e}", opts.host, opts.port))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        {
            let mut out = std::io::stdout().lock();
            writeln!(out, "listening http://{addr} root {}", app.state.built.root)
                .and_then(|_| out.flush())
                .map_err(|e| format!("stdout: {e}"))?;
        }
        app.log(LogLevel::Info, || {
            format!(
                "serving on http://{addr}; faults: {}",
                app.faults.describe()
            )
        });
        let summary = {
            let app = app.clone();
            tokio::spawn(async move {
                let mut last = 0;
                loop {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    let now = app.activity();
                    if now != last {
                        last = now;
                        app.log(LogLevel::Info, || app.summary());
                    }
                }
            })
        };
        let why = shutdown_signal(opts.exit_on_stdin_close);
        let reason = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let r2 = reason.clone();
        server::serve(app.clone(), listener, async move {
            *r2.lock().unwrap() = why.await;
        })
        .await;
        summary.abort();
        let reason = reason.lock().unwrap().clone();
        app.log(LogLevel::Info, || {
            format!("shutting down ({reason}); {}", app.summary())
        });
        Ok::<(), String>(())
    })?;
    // In-flight connections are simply dropped; do not wait for them.
    rt.shutdown_timeout(Duration::from_millis(100));
    Ok(())
}

/// Completes on SIGINT, SIGTERM or, when asked, the end of standard input; says which.
async fn shutdown_signal(stdin: bool) -> String {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let stdin_closed = async move {
        match stdin {
            true => drop(rx.await),
            false => std::future::pending().await,
        }
    };
    if stdin {
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 1024];
            let mut input = std::io::stdin();
            while matches!(input.read(&mut buf), Ok(n) if n > 0) {}
            let _ = tx.send(());
        });
    }
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT".into(),
        _ = term => "SIGTERM".into(),
        _ = stdin_closed => "stdin closed".into(),
    }
}
