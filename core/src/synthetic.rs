//! Seeded synthetic states for benchmarks and scale tests: the same spec always gives the
//! same root.

use crate::rng::SplitMix64;
use crate::state::{build_state, BuiltState, GenesisAccount};

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyntheticSpec {
    /// Number of accounts (contracts included).
    pub accounts: usize,
    /// How many of them are contracts with code and storage.
    pub contracts: usize,
    /// Storage slots per contract.
    pub slots_per_contract: usize,
    /// Bytes of code per contract.
    pub code_size: usize,
    /// Distinct codes: contracts share them round-robin, as real deployments share
    /// bytecode (must be at least 1 when there are contracts).
    pub distinct_codes: usize,
    /// The seed.
    pub seed: u64,
}

impl SyntheticSpec {
    /// `accounts` plain accounts plus 1% contracts with 16 slots and 1 KiB of code.
    pub fn with_accounts(accounts: usize, seed: u64) -> Self {
        let contracts = accounts / 100;
        SyntheticSpec {
            accounts,
            contracts,
            slots_per_contract: 16,
            code_size: 1024,
            distinct_codes: (contracts / 4).max(1),
            seed,
        }
    }
}

/// The accounts of a spec, in a fixed order.
pub fn synthetic_accounts(spec: &SyntheticSpec) -> Vec<GenesisAccount> {
    let mut rng = SplitMix64::new(spec.seed);
    let codes: Vec<Vec<u8>> = (0..spec.distinct_codes.max(1))
        .map(|_| {
            let mut c = vec![0u8; spec.code_size.max(1)];
            rng.fill(&mut c);
            c
        })
        .collect();
    (0..spec.accounts)
        .map(|i| {
            let mut a = GenesisAccount::default();
            rng.fill(&mut a.address);
            a.nonce = rng.next_u64() % 1000;
            rng.fill(&mut a.balance[20..]);
            if i < spec.contracts {
                a.code = codes[i % codes.len()].clone();
                a.storage = (0..spec.slots_per_contract)
                    .map(|_| {
                        let (mut k, mut v) = ([0u8; 32], [0u8; 32]);
                        rng.fill(&mut k);
                        rng.fill(&mut v[24..]);
                        v[31] |= 1; // never zero, so every slot is stored
                        (k, v)
                    })
                    .collect();
            }
            a
        })
        .collect()
}

/// Builds the state of a spec.
pub fn build_synthetic(spec: &SyntheticSpec) -> BuiltState {
    build_state(synthetic_accounts(spec))
}

#[cfg(test)]
mod tests {
    use super::*;
    // Under wasm the same tests run on wasm-bindgen-test (`wasm-pack test --node core`).
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn same_seed_same_root_other_seed_other_root() {
        let a = build_synthetic(&SyntheticSpec::with_accounts(500, 1));
        let b = build_synthetic(&SyntheticSpec::with_accounts(500, 1));
        let c = build_synthetic(&SyntheticSpec::with_accounts(500, 2));
        assert_eq!(a.root, b.root);
        assert_ne!(a.root, c.root);
        assert_eq!(a.accounts, 500);
        assert_eq!(a.codes.len(), 1);
    }
}
