//! The account layer: account leaves, fixture states and whole-state building.

use crate::builder::{build_trie, NodeMap};
use crate::hash::{keccak256, EMPTY_CODE_HASH, EMPTY_ROOT, H256};
use crate::rlp_reader::Item;
use rlp::RlpStream;
use std::collections::{BTreeMap, HashMap};

/// An account as the state trie stores it: `RLP([nonce, balance, storageRoot, codeHash])`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Transactions sent (or contracts created).
    pub nonce: u64,
    /// Balance in wei, big-endian, 32 bytes.
    pub balance: [u8; 32],
    /// Root of the account's storage trie (`EMPTY_ROOT` when it has none).
    pub storage_root: H256,
    /// keccak256 of the code (`EMPTY_CODE_HASH` when it has none).
    pub code_hash: H256,
}

/// Why a leaf value is not an account.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    /// Not RLP, or trailing bytes.
    #[error("invalid account RLP: {0}")]
    Rlp(String),
    /// Not a list of four items.
    #[error("an account is a list of 4 items")]
    Shape,
    /// An integer with leading zeros or too wide.
    #[error("non-canonical or oversized integer in field {0}")]
    Integer(&'static str),
    /// A hash field that is not 32 bytes.
    #[error("field {0} must be 32 bytes")]
    HashLength(&'static str),
}

impl Account {
    /// Encodes the account as its trie leaf value.
    pub fn encode(&self) -> Vec<u8> {
        let mut s = RlpStream::new_list(4);
        s.append(&self.nonce)
            .append(&strip_zeros(&self.balance))
            .append(&self.storage_root.0.as_slice())
            .append(&self.code_hash.0.as_slice());
        s.out().to_vec()
    }

    /// Decodes a leaf value strictly (canonical RLP and integers, exact lengths, no
    /// trailing bytes).
    pub fn decode(bytes: &[u8]) -> Result<Account, AccountError> {
        let bad = |e: crate::rlp_reader::RlpError| AccountError::Rlp(e.to_string());
        let top = Item::parse(bytes).map_err(bad)?;
        if !top.is_list {
            return Err(AccountError::Shape);
        }
        let items = top.items().map_err(bad)?;
        let [nonce, balance, storage_root, code_hash] = items.as_slice() else {
            return Err(AccountError::Shape);
        };
        fn field<'a>(item: &Item<'a>) -> Result<&'a [u8], AccountError> {
            item.bytes().map_err(|_| AccountError::Shape)
        }
        let nonce = nonce.u64().map_err(|_| AccountError::Integer("nonce"))?;
        let balance_bytes = field(balance)?;
        canonical_int(balance_bytes, 32).ok_or(AccountError::Integer("balance"))?;
        let mut balance = [0u8; 32];
        balance[32 - balance_bytes.len()..].copy_from_slice(balance_bytes);
        let storage_root = H256::from_slice(field(storage_root)?)
            .ok_or(AccountError::HashLength("storageRoot"))?;
        let code_hash =
            H256::from_slice(field(code_hash)?).ok_or(AccountError::HashLength("codeHash"))?;
        Ok(Account {
            nonce,
            balance,
            storage_root,
            code_hash,
        })
    }

    /// Balance as `0x`-prefixed minimal hex (`0x0` for zero).
    pub fn balance_hex(&self) -> String {
        let s = hex::encode(strip_zeros(&self.balance));
        let s = s.trim_start_matches('0');
        format!("0x{}", if s.is_empty() { "0" } else { s })
    }
}

/// `Some(())` when `b` is a canonical big-endian integer of at most `max` bytes.
fn canonical_int(b: &[u8], max: usize) -> Option<()> {
    (b.len() <= max && b.first() != Some(&0)).then_some(())
}

/// Removes leading zero bytes.
pub fn strip_zeros(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|&&x| x == 0).count();
    &b[n..]
}

/// One account of a state to build: plain values, before hashing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GenesisAccount {
    /// The 20-byte address (its keccak256 is the trie key).
    pub address: [u8; 20],
    /// Nonce.
    pub nonce: u64,
    /// Balance, big-endian.
    pub balance: [u8; 32],
    /// Contract code (empty for plain accounts).
    pub code: Vec<u8>,
    /// Storage slots and values as 32-byte words; zero values are not stored.
    pub storage: Vec<([u8; 32], [u8; 32])>,
}

/// A whole state as stored by hash: the account trie, every storage trie and the codes.
#[derive(Debug, Default)]
pub struct BuiltState {
    /// The state root.
    pub root: H256,
    /// Every trie node, once per distinct hash.
    pub nodes: NodeMap,
    /// Every distinct contract code by its hash.
    pub codes: HashMap<H256, Vec<u8>>,
    /// Number of accounts.
    pub accounts: usize,
}

impl BuiltState {
    /// Total bytes of all nodes.
    pub fn node_bytes(&self) -> usize {
        self.nodes.values().map(Vec::len).sum()
    }

    /// Total bytes of all codes.
    pub fn code_bytes(&self) -> usize {
        self.codes.values().map(Vec::len).sum()
    }
}

/// Builds the account trie, storage tries and code map of `accounts`.
pub fn build_state(accounts: impl IntoIterator<Item = GenesisAccount>) -> BuiltState {
    let mut state = BuiltState::default();
    let mut leaves = Vec::new();
    for acc in accounts {
        let slots = acc
            .storage
            .iter()
            .filter(|(_, v)| v.iter().any(|&b| b != 0))
            .map(|(k, v)| {
                (
                    keccak256(k).0.to_vec(),
                    rlp::encode(&strip_zeros(v)).to_vec(),
                )
            })
            .collect();
        let storage_root = build_trie(slots, &mut state.nodes);
        let code_hash = if acc.code.is_empty() {
            EMPTY_CODE_HASH
        } else {
            let h = keccak256(&acc.code);
            state.codes.insert(h, acc.code);
            h
        };
        let account = Account {
            nonce: acc.nonce,
            balance: acc.balance,
            storage_root,
            code_hash,
        };
        leaves.push((keccak256(&acc.address).0.to_vec(), account.encode()));
    }
    state.accounts = leaves.len();
    state.root = build_trie(leaves, &mut state.nodes);
    state
}

/// A state file of `../shared/fixtures/states` (see its README).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateFixture {
    /// Short name.
    pub name: String,
    /// The published state root.
    pub state_root: String,
    /// Accounts by `0x` address.
    pub alloc: BTreeMap<String, FixtureAccount>,
}

/// One account of a fixture: hex integers, not padded.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct FixtureAccount {
    /// Balance, hex.
    #[serde(default)]
    pub balance: Option<String>,
    /// Nonce, hex.
    #[serde(default)]
    pub nonce: Option<String>,
    /// Code, hex.
    #[serde(default)]
    pub code: Option<String>,
    /// Slot → value, both hex integers.
    #[serde(default)]
    pub storage: BTreeMap<String, String>,
}

/// Why a fixture could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// Not JSON of the expected shape.
    #[error("fixture JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A hex field that does not parse or does not fit.
    #[error("bad hex in {field}: {value}")]
    Hex {
        /// Which field.
        field: &'static str,
        /// The offending text.
        value: String,
    },
}

impl StateFixture {
    /// Parses fixture JSON.
    pub fn from_json(text: &str) -> Result<StateFixture, FixtureError> {
        Ok(serde_json::from_str(text)?)
    }

    /// The published root.
    pub fn root(&self) -> Result<H256, FixtureError> {
        H256::from_hex(&self.state_root).map_err(|_| FixtureError::Hex {
            field: "stateRoot",
            value: self.state_root.clone(),
        })
    }

    /// The accounts as plain values.
    pub fn accounts(&self) -> Result<Vec<GenesisAccount>, FixtureError> {
        self.alloc
            .iter()
            .map(|(addr, a)| {
                let address: [u8; 20] =
                    hex_bytes(addr, "address")?
                        .try_into()
                        .map_err(|_| FixtureError::Hex {
                            field: "address",
                            value: addr.clone(),
                        })?;
                let word = |s: &Option<String>, f| -> Result<[u8; 32], FixtureError> {
                    s.as_deref().map_or(Ok([0; 32]), |s| hex_word(s, f))
                };
                let nonce_word = word(&a.nonce, "nonce")?;
                if nonce_word[..24].iter().any(|&b| b != 0) {
                    return Err(FixtureError::Hex {
                        field: "nonce",
                        value: format!("{:?}", a.nonce),
                    });
                }
                let storage = a
                    .storage
                    .iter()
                    .map(|(k, v)| Ok((hex_word(k, "slot")?, hex_word(v, "value")?)))
                    .collect::<Result<_, FixtureError>>()?;
                Ok(GenesisAccount {
                    address,
                    nonce: u64::from_be_bytes(nonce_word[24..].try_into().expect("8 bytes")),
                    balance: word(&a.balance, "balance")?,
                    code: a
                        .code
                        .as_deref()
                        .map_or(Ok(vec![]), |c| hex_bytes(c, "code"))?,
                    storage,
                })
            })
            .collect()
    }

    /// Builds the fixture's whole state.
    pub fn build(&self) -> Result<BuiltState, FixtureError> {
        Ok(build_state(self.accounts()?))
    }
}

/// Decodes `0x` hex of any length, padding an odd digit count on the left.
pub fn hex_bytes(s: &str, field: &'static str) -> Result<Vec<u8>, FixtureError> {
    let digits = s.strip_prefix("0x").unwrap_or(s);
    let padded = if digits.len() % 2 == 1 {
        format!("0{digits}")
    } else {
        digits.to_string()
    };
    hex::decode(padded).map_err(|_| FixtureError::Hex {
        field,
        value: s.to_string(),
    })
}

/// Decodes a hex integer into a 32-byte big-endian word.
pub fn hex_word(s: &str, field: &'static str) -> Result<[u8; 32], FixtureError> {
    let bytes = hex_bytes(s, field)?;
    let bytes = strip_zeros(&bytes);
    if bytes.len() > 32 {
        return Err(FixtureError::Hex {
            field,
            value: s.to_string(),
        });
    }
    let mut w = [0u8; 32];
    w[32 - bytes.len()..].copy_from_slice(bytes);
    Ok(w)
}

/// True when `root` is the root of an empty trie (nothing to fetch).
pub fn is_empty_root(root: &H256) -> bool {
    *root == EMPTY_ROOT
}

#[cfg(test)]
mod tests {
    use super::*;
    // Under wasm the same tests run on wasm-bindgen-test (`wasm-pack test --node core`).
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn account_roundtrip() {
        let mut balance = [0u8; 32];
        balance[30] = 0x12;
        balance[31] = 0x34;
        let a = Account {
            nonce: 7,
            balance,
            storage_root: EMPTY_ROOT,
            code_hash: EMPTY_CODE_HASH,
        };
        assert_eq!(Account::decode(&a.encode()).unwrap(), a);
        assert_eq!(a.balance_hex(), "0x1234");
    }

    #[test]
    fn account_rejects_noncanonical() {
        let mut s = RlpStream::new_list(4);
        s.append(&vec![0u8, 1])
            .append(&0u8)
            .append(&EMPTY_ROOT.0.as_slice())
            .append(&EMPTY_CODE_HASH.0.as_slice());
        assert_eq!(
            Account::decode(&s.out()),
            Err(AccountError::Integer("nonce"))
        );
        let mut s = RlpStream::new_list(4);
        s.append(&1u8)
            .append(&0u8)
            .append(&vec![1u8; 31])
            .append(&EMPTY_CODE_HASH.0.as_slice());
        assert_eq!(
            Account::decode(&s.out()),
            Err(AccountError::HashLength("storageRoot"))
        );
        let mut s = RlpStream::new_list(3);
        s.append(&1u8).append(&0u8).append(&0u8);
        assert_eq!(Account::decode(&s.out()), Err(AccountError::Shape));
    }
}
