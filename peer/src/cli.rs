//! Command-line options.

use crate::app::{Limits, LogLevel};
use crate::faults::FaultConfig;
use std::time::Duration;
use triesync_core::synthetic::SyntheticSpec;

/// Where the served state comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A fixture JSON file (`../shared/fixtures/states/*.json` format).
    State(String),
    /// A seeded synthetic state.
    Synthetic(SyntheticSpec),
}

/// Everything the command line sets.
#[derive(Debug, Clone)]
pub struct Options {
    /// The state.
    pub source: Source,
    /// Address to bind.
    pub host: String,
    /// Port to bind (0: any free port).
    pub port: u16,
    /// Log verbosity.
    pub log: LogLevel,
    /// Exit when standard input reaches end of file.
    pub exit_on_stdin_close: bool,
    /// A name for `/v1/info` instead of the fixture's.
    pub name: Option<String>,
    /// Faults.
    pub faults: FaultConfig,
    /// Limits.
    pub limits: Limits,
}

/// The `--help` text.
pub const USAGE: &str = "\
triesync-peer: serves Ethereum state trie nodes and code by hash (see PROTOCOL.md)

USAGE:
  triesync-peer (--state PATH.json | --synthetic SPEC) [OPTIONS]

STATE (exactly one):
  --state PATH            a fixture state file (shared/fixtures/states/*.json format)
  --synthetic SPEC        a seeded synthetic state; SPEC is
                          ACCOUNTS[,contracts=N][,slots=K][,code=BYTES][,codes=D][,seed=S]
                          ACCOUNTS and N accept k/m suffixes (e.g. 1m); defaults:
                          contracts=1% of accounts, slots=16, code=1024,
                          codes=max(contracts/4,1) distinct codes, seed=1

SERVER:
  --host HOST             address to bind (default 127.0.0.1)
  --port PORT             port to bind; 0 picks a free one (default 8547)
  --name NAME             name shown by /v1/info (default: the fixture's name)
  --log LEVEL             error|warn|info|debug (default info); debug logs every request
  --exit-on-stdin-close   exit when standard input closes
  --header-timeout-ms N   time to receive request headers, also idle keep-alive (default 10000)
  --body-timeout-ms N     time to receive a request body (default 10000)
  --max-connections N     open connections at most (default 1024)
  --ws-in-flight N        requests answered at once per WebSocket (default 16)
  --stall-max-ms N        a stalled request's connection is closed after this (default 600000)
  --write-timeout-ms N    a connection whose answer makes no write progress for this long
                          (its client stopped reading) is closed (default: the header timeout)
  --answer-memory BYTES   answers built and not yet written, over all connections, at most;
                          k/m/g suffixes are KiB/MiB/GiB (default 256m); a request whose
                          answer does not fit waits for earlier answers to be written

FAULTS (RATE is a probability 0..1; same --fault-seed, same faults for the same requests):
  --fault-seed S          seed of the fault sequence (default 0)
  --corrupt RATE          per blob: flip one byte
  --omit RATE             per blob: leave it out
  --delay-ms N            delay every answer by N ms
  --stall RATE            per request: never answer (1.0: never answer anything)
  --close RATE            per request: close the connection / socket without answering
  --error500 RATE         per HTTP request: answer 500
  --html-error RATE       per HTTP request: answer an HTML error page (status 200 or 502)
  --garbage RATE          per request: answer random bytes that are neither RLP nor JSON
  --unrequested RATE      per request: add 1-3 random real nodes and 1 random blob
  --truncate RATE         per HTTP request: send the headers and half the body, then close
  --extra N               add N real nodes nobody asked for to every answer

FLOODS (hostile answers that are too big or never end; each applies to a request with
probability --flood-rate, drawn from the same seeded sequence):
  --flood-rate RATE       per request: whether the flood options apply (default 1)
  --flood-bytes N         answer with a body (HTTP, JSON-RPC: streamed, chunked) or one
                          WebSocket message of N bytes, the answer's blobs over and over
  --endless-body          HTTP, JSON-RPC: stream the answer's blobs forever; WebSocket:
                          send unsolicited answers until the socket closes
  --ws-flood N            WebSocket: send N unsolicited answers (unknown ids) before each answer
  --repeat-blob N         send the answer's first blob N times

The first line on stdout is `listening http://HOST:PORT root 0x<root>`.
";

/// Splits `--flag=value` into the flag and its inline value; any other argument is a flag
/// (or value) with no inline value.
pub fn split_flag(arg: &str) -> (String, Option<String>) {
    match arg.split_once('=') {
        Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
        _ => (arg.to_string(), None),
    }
}

/// Parses a count with an optional suffix from `suffixes` (letter, multiplier).
fn parse_scaled(s: &str, suffixes: &[(u8, usize)]) -> Option<usize> {
    let t = s.trim().replace('_', "").to_ascii_lowercase();
    let (digits, mul) = match suffixes
        .iter()
        .find(|(c, _)| t.as_bytes().last() == Some(c))
    {
        Some(&(_, mul)) => (&t[..t.len() - 1], mul),
        None => (t.as_str(), 1),
    };
    digits.parse::<usize>().ok()?.checked_mul(mul)
}

/// A count: `1000`, `100k`, `1m` (decimal suffixes).
fn parse_count(s: &str) -> Result<usize, String> {
    parse_scaled(s, &[(b'k', 1_000), (b'm', 1_000_000)])
        .ok_or_else(|| format!("not a count: {s:?}"))
}

/// A byte size: `65536`, `64k`, `256m`, `1g` (binary suffixes); not zero.
fn parse_bytes(s: &str) -> Result<usize, String> {
    parse_scaled(s, &[(b'k', 1 << 10), (b'm', 1 << 20), (b'g', 1 << 30)])
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("not a byte size: {s:?}"))
}

/// Parses `ACCOUNTS[,contracts=N][,slots=K][,code=BYTES][,codes=D][,seed=S]`.
pub fn parse_synthetic(spec: &str) -> Result<SyntheticSpec, String> {
    let mut parts = spec.split(',');
    let accounts = parse_count(parts.next().unwrap_or(""))?;
    if accounts == 0 {
        return Err("a synthetic state needs at least one account".into());
    }
    let (mut contracts, mut slots, mut code, mut codes, mut seed) = (None, None, None, None, 1u64);
    for p in parts {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| format!("expected key=value, got {p:?}"))?;
        match k.trim() {
            "contracts" => contracts = Some(parse_count(v)?),
            "slots" => slots = Some(parse_count(v)?),
            "code" => code = Some(parse_count(v)?),
            "codes" => codes = Some(parse_count(v)?),
            "seed" => seed = v.trim().parse().map_err(|_| format!("not a seed: {v:?}"))?,
            other => {
                return Err(format!(
                    "unknown synthetic key {other:?} (contracts, slots, code, codes, seed)"
                ))
            }
        }
    }
    let mut s = SyntheticSpec::with_accounts(accounts, seed);
    if let Some(c) = contracts {
        if c > accounts {
            return Err(format!(
                "contracts={c} is more than the {accounts} accounts"
            ));
        }
        s.contracts = c;
        s.distinct_codes = (c / 4).max(1);
    }
    if let Some(k) = slots {
        s.slots_per_contract = k;
    }
    if let Some(b) = code {
        if b == 0 {
            return Err("code=0: contracts need at least one byte of code".into());
        }
        s.code_size = b;
    }
    if let Some(d) = codes {
        if d == 0 {
            return Err("codes must be at least 1".into());
        }
        s.distinct_codes = d;
    }
    Ok(s)
}

fn parse_rate(flag: &str, v: &str) -> Result<f64, String> {
    match v.trim().parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("{flag} takes a rate between 0 and 1, got {v:?}")),
    }
}

fn parse_num<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.trim()
        .parse()
        .map_err(|_| format!("{flag}: not a number: {v:?}"))
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    /// Serve.
    Run(Box<Options>),
    /// Print the usage and exit.
    Help,
}

/// Parses the arguments (without the program name). Accepts `--flag value` and
/// `--flag=value`.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Command, String> {
    let mut args = args.into_iter();
    let mut source = None;
    let mut o = Options {
        source: Source::State(String::new()),
        host: "127.0.0.1".into(),
        port: 8547,
        log: LogLevel::Info,
        exit_on_stdin_close: false,
        name: None,
        faults: FaultConfig::default(),
        limits: Limits::default(),
    };
    while let Some(arg) = args.next() {
        let (flag, inline) = split_flag(&arg);
        let mut value = || -> Result<String, String> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => args.next().ok_or_else(|| format!("{flag} needs a value")),
            }
        };
        let ms = |v: String| parse_num::<u64>(&flag, &v).map(Duration::from_millis);
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--state" => {
                if source.is_some() {
                    return Err("give exactly one of --state and --synthetic".into());
                }
                source = Some(Source::State(value()?));
            }
            "--synthetic" => {
                if source.is_some() {
                    return Err("give exactly one of --state and --synthetic".into());
                }
                source = Some(Source::Synthetic(parse_synthetic(&value()?)?));
            }
            "--host" => o.host = value()?,
            "--port" => o.port = parse_num(&flag, &value()?)?,
            "--name" => o.name = Some(value()?),
            "--log" => o.log = value()?.parse()?,
            "--exit-on-stdin-close" => o.exit_on_stdin_close = true,
            "--header-timeout-ms" => o.limits.header_timeout = ms(value()?)?,
            "--body-timeout-ms" => o.limits.body_timeout = ms(value()?)?,
            "--stall-max-ms" => o.limits.stall_max = ms(value()?)?,
            "--write-timeout-ms" => o.limits.write_timeout = Some(ms(value()?)?),
            "--answer-memory" => o.limits.answer_memory = parse_bytes(&value()?)?,
            "--max-connections" => {
                o.limits.max_connections = parse_num::<usize>(&flag, &value()?)?.max(1)
            }
            "--ws-in-flight" => {
                o.limits.ws_in_flight = parse_num::<usize>(&flag, &value()?)?.max(1)
            }
            "--fault-seed" => o.faults.seed = parse_num(&flag, &value()?)?,
            "--corrupt" => o.faults.corrupt = parse_rate(&flag, &value()?)?,
            "--omit" => o.faults.omit = parse_rate(&flag, &value()?)?,
            "--stall" => o.faults.stall = parse_rate(&flag, &value()?)?,
            "--close" => o.faults.close = parse_rate(&flag, &value()?)?,
            "--error500" => o.faults.error500 = parse_rate(&flag, &value()?)?,
            "--html-error" => o.faults.html_error = parse_rate(&flag, &value()?)?,
            "--garbage" => o.faults.garbage = parse_rate(&flag, &value()?)?,
            "--unrequested" => o.faults.unrequested = parse_rate(&flag, &value()?)?,
            "--truncate" => o.faults.truncate = parse_rate(&flag, &value()?)?,
            "--delay-ms" => o.faults.delay_ms = parse_num(&flag, &value()?)?,
            "--extra" => o.faults.extra = parse_num(&flag, &value()?)?,
            "--flood-rate" => o.faults.flood_rate = Some(parse_rate(&flag, &value()?)?),
            "--flood-bytes" => o.faults.flood_bytes = parse_count(&value()?)? as u64,
            "--endless-body" => o.faults.endless_body = true,
            "--ws-flood" => o.faults.ws_flood = parse_count(&value()?)?,
            "--repeat-blob" => o.faults.repeat_blob = parse_count(&value()?)?,
            _ => return Err(format!("unknown argument {arg:?} (see --help)")),
        }
    }
    o.source = source.ok_or("give --state PATH or --synthetic SPEC (see --help)")?;
    Ok(Command::Run(Box::new(o)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn synthetic_specs() {
        let s = parse_synthetic("1m").unwrap();
        assert_eq!((s.accounts, s.contracts, s.seed), (1_000_000, 10_000, 1));
        let s = parse_synthetic("2000,contracts=5,slots=3,code=100,seed=9").unwrap();
        assert_eq!(
            (
                s.accounts,
                s.contracts,
                s.slots_per_contract,
                s.code_size,
                s.seed
            ),
            (2000, 5, 3, 100, 9)
        );
        assert_eq!(s.distinct_codes, 1);
        assert!(parse_synthetic("10,contracts=11").is_err());
        assert!(parse_synthetic("10,foo=1").is_err());
        assert!(parse_synthetic("x").is_err());
        assert!(parse_synthetic("0").is_err());
    }

    #[test]
    fn flags() {
        let Command::Run(o) = parse(args(
            "--synthetic 100 --port 0 --corrupt=0.5 --extra 2 --log debug",
        ))
        .unwrap() else {
            panic!()
        };
        assert_eq!(o.port, 0);
        assert_eq!(o.faults.corrupt, 0.5);
        assert_eq!(o.faults.extra, 2);
        assert_eq!(o.log, LogLevel::Debug);
        let Command::Run(o) = parse(args(
            "--synthetic 100 --flood-bytes 100m --endless-body --ws-flood=1k --repeat-blob 1000 --flood-rate 0.5",
        ))
        .unwrap() else {
            panic!()
        };
        assert_eq!(o.faults.flood_bytes, 100_000_000);
        assert!(o.faults.endless_body);
        assert_eq!(o.faults.ws_flood, 1000);
        assert_eq!(o.faults.repeat_blob, 1000);
        assert_eq!(o.faults.flood_rate, Some(0.5));
        assert!(o.faults.floods());
        assert!(parse(args("--synthetic 100 --flood-rate 1.5")).is_err());
        assert!(parse(args("--synthetic 100 --flood-bytes x")).is_err());
        assert!(parse(args("--synthetic 100 --corrupt 2")).is_err());
        assert!(parse(args("--synthetic 100 --state x")).is_err());
        assert!(parse(args("--port 1")).is_err());
        assert!(parse(args("--synthetic 100 --bogus")).is_err());
    }

    #[test]
    fn limit_flags() {
        let Command::Run(o) = parse(args("--synthetic 100")).unwrap() else {
            panic!()
        };
        assert_eq!(o.limits.write_timeout, None);
        assert_eq!(o.limits.answer_memory, 256 << 20);
        let Command::Run(o) = parse(args(
            "--synthetic 100 --write-timeout-ms 2500 --answer-memory 64k --max-connections 8",
        ))
        .unwrap() else {
            panic!()
        };
        assert_eq!(o.limits.write_timeout, Some(Duration::from_millis(2500)));
        assert_eq!(o.limits.answer_memory, 64 << 10);
        assert_eq!(o.limits.max_connections, 8);
        assert_eq!(parse_bytes("1g"), Ok(1 << 30));
        assert_eq!(parse_bytes("3_000"), Ok(3000));
        for bad in ["0", "x", "12q", "-1", ""] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
        assert!(parse(args("--synthetic 100 --write-timeout-ms soon")).is_err());
    }
}
