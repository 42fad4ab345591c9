//! Load and abuse, bounded: the `triesync-loadtest` tool against the real `triesync-peer`
//! binary. 200 clients each walk a whole 5,000-account state from its root over HTTP,
//! WebSocket and JSON-RPC (every blob hashed and decoded), once alone and once with abusive
//! clients mixed in: slow-loris headers, oversized and garbage bodies, WebSocket floods,
//! clients that never read their answers, idle TCP and WebSocket floods over the connection
//! limit. The good clients must all finish with no error answer, the server must stay up
//! and keep its memory bounded. LOADTEST.md has the full-size runs (100,000 accounts).

use serde_json::Value;
use std::process::Command;
use std::sync::Mutex;

/// The two runs share the machine's two cores: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn loadtest(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_triesync-loadtest"))
        .args(["--server", env!("CARGO_BIN_EXE_triesync-peer")])
        .args(["--json", "--timeout-s", "170", "--request-timeout-s", "120"])
        .args(args)
        .output()
        .expect("run triesync-loadtest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}); status {:?}\nstdout: {stdout}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let g = &report["good"];
    eprintln!(
        "{} good clients: {} requests in {:.1} s ({:.0} requests/s, {:.1} MiB/s), p50 {} ms, p99 {} ms, \
         {} errors; server peak {:.0} MiB; abusers: {}",
        g["clients"],
        g["requests"],
        g["seconds"].as_f64().unwrap_or(0.0),
        g["requestsPerSec"].as_f64().unwrap_or(0.0),
        g["blobMiBPerSec"].as_f64().unwrap_or(0.0),
        g["latency"]["p50Ms"],
        g["latency"]["p99Ms"],
        g["errors"],
        report["server"]["vmHwmMiB"].as_f64().unwrap_or(0.0),
        report["abuse"]
    );
    report
}

/// Every good client walked the whole state without one error answer, and the server is
/// still up and answering.
fn assert_good_clients_and_server(r: &Value) {
    let g = &r["good"];
    assert_eq!(g["errors"], 0, "error answers: {}", g["errorSamples"]);
    assert_eq!(g["shortAnswers"], 0);
    assert_eq!(g["unfinished"], 0, "{}", g["errorSamples"]);
    assert_eq!(g["walksComplete"], true, "walks: {g}");
    let nodes = r["state"]["nodes"].as_u64().unwrap();
    assert!(
        nodes > 7_000,
        "a 5k-account state has ~8,000 nodes: {nodes}"
    );
    assert_eq!(
        g["walkNodes"].as_u64(),
        Some(nodes),
        "each walk fetched every node once"
    );
    assert!(g["requests"].as_u64().unwrap() >= 200 * (nodes / 384));
    assert!(g["latency"]["p99Ms"].as_f64().unwrap() > 0.0);
    let s = &r["server"];
    assert_eq!(s["alive"], true, "the server died: {}", s["stderrTail"]);
    assert_eq!(s["answersAfter"], true, "{}", s["answersAfterError"]);
    assert_eq!(s["exitStatus"], 0, "the server exits cleanly afterwards");
    // The state is about 1 MiB: hundreds of MiB would mean answers or buffers piling up.
    let peak = s["vmHwmMiB"].as_f64().unwrap();
    assert!(peak < 400.0, "server peak memory {peak:.0} MiB");
}

fn abuser<'a>(r: &'a Value, kind: &str) -> &'a Value {
    r["abuse"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} abusers in {}", r["abuse"]))
}

#[test]
fn two_hundred_clients_walk_the_whole_state() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let r = loadtest(&["--clients", "200", "--accounts", "5k"]);
    assert_good_clients_and_server(&r);
    let by = &r["good"]["latencyByTransport"];
    for t in ["http", "ws", "rpc"] {
        assert!(by[t]["count"].as_u64().unwrap() > 0, "no {t} requests");
    }
    assert_eq!(r["pass"], true);
}

#[test]
fn abusive_clients_do_not_stop_good_ones() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // 200 good clients, 40 idle WebSockets and 220 idle connections, plus the other
    // abusers, against a limit of 400 connections: well over it. Timeouts of 2 s, so that
    // slow-loris headers, stalled bodies and clients that never read are cut during the run.
    let r = loadtest(&[
        "--clients",
        "200",
        "--accounts",
        "5k",
        "--max-connections",
        "400",
        "--header-timeout-ms",
        "2000",
        "--body-timeout-ms",
        "2000",
        "--slowloris",
        "8",
        "--oversized",
        "2",
        "--garbage",
        "2",
        "--ws-flood",
        "2",
        "--no-read",
        "6",
        "--ws-idle",
        "40",
        "--conn-flood",
        "220",
        // Abusers first, long enough for the 2 s timeouts to cut some before the good
        // clients start.
        "--abuse-lead-ms",
        "2500",
    ]);
    assert_good_clients_and_server(&r);
    // Every abuser saw only what the protocol allows (413, 400, -32700, close codes...).
    for a in r["abuse"].as_array().unwrap() {
        assert_eq!(a["unexpected"], 0, "{a}");
        assert!(a["attempts"].as_u64().unwrap() > 0, "{a}");
    }
    // Slow-loris connections and idle floods were cut (header timeout, or closed to make
    // room at the limit); so were clients that never read (the write timeout).
    for kind in ["slowloris", "conn-flood", "no-read"] {
        let a = abuser(&r, kind);
        assert!(a["cutByServer"].as_u64().unwrap() > 0, "{kind}: {a}");
    }
    // The WebSocket floods were answered all along, never past the in-flight limit.
    let f = abuser(&r, "ws-flood");
    assert!(f["answers"].as_u64().unwrap() > 0, "{f}");
    assert_eq!(r["pass"], true);
}
