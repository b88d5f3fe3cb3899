//! The crate's deterministic mixers and generators, each written once.
//!
//! Several outputs here are fixed for good: [`mix64`] decides which
//! partition (and so which shard and data directory) a point lives in,
//! and the others decide sequences tests and calibrations rely on. The
//! tests pin their values: change none of them.

/// splitmix64's increment (the golden ratio in 64 bits).
const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// splitmix64's finaliser, a bijection that spreads sequential inputs
/// evenly (a point's partition is `mix64(id) % partitions`).
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One step of splitmix64 (Steele, Lea and Flood): advance `state` by
/// [`GAMMA`] and return its [`mix64`].
#[inline]
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(GAMMA);
    mix64(*state)
}

/// A cheaper, weaker mix than [`mix64`]: `n * GAMMA`, then one
/// xor-shift-multiply round (shift 31, not 30, and no second round). It
/// picks the slot a query replaces in a partition's calibration reservoir
/// (`Partition::remember_query`); it stays as it is so the reservoir's
/// contents, and so recalibrations, do not change.
#[inline]
pub fn mix64_short(n: u64) -> u64 {
    let z = n.wrapping_mul(GAMMA);
    (z ^ (z >> 31)).wrapping_mul(0xbf58_476d_1ce4_e5b9)
}

/// One step of Knuth's MMIX linear congruential generator: the next state
/// (the indexer's build seeds; test data). Its low bits are weak: take the
/// high ones.
#[inline]
pub fn lcg64(state: u64) -> u64 {
    state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values taken from the copies these functions replaced (placement's
    /// `mix`, ivf's `splitmix`, the reservoir's mix, the indexer's LCG),
    /// before they were merged.
    #[test]
    fn outputs_are_those_of_the_replaced_copies() {
        let inputs = [0u64, 1, 2, 12345, 1 << 40, u64::MAX];
        let mixed = [
            0x0000_0000_0000_0000,
            0x5692_161d_100b_05e5,
            0xdbd2_3897_3a2b_148a,
            0xf36c_f116_4265_dd51,
            0x00ab_4daf_7c26_73f8,
            0xb4d0_55fc_f2cb_bd7b,
        ];
        assert_eq!(inputs.map(mix64), mixed);
        let mut s = 1u64;
        let seq = [0x910a_2dec_8902_5cc1, 0xbeeb_8da1_658e_ec67, 0xf893_a2ee_fb32_555e, 0x71c1_8690_ee42_c90b];
        assert_eq!(seq.map(|_| splitmix64(&mut s)), seq);
        let mut s = 0u64;
        assert_eq!([(); 2].map(|_| splitmix64(&mut s)), [0xe220_a839_7b1d_cdaf, 0x6e78_9e6a_a1b9_65f4]);
        let short = [0x642b_3652_356e_c46f, 0x6bc5_1844_3228_c76f, 0x9605_3b28_ef40_f84e, 0x0c0e_0507_f84d_f063];
        assert_eq!([1u64, 129, 200, 12345].map(mix64_short), short);
        let mut seed = 0x5eed_u64 ^ 3;
        let lcg = [0x47df_1fbb_0f16_4325, 0x3cf4_5141_ba29_a9d0, 0x77ca_31a0_f208_8adf];
        assert_eq!(
            lcg.map(|_| {
                seed = lcg64(seed);
                seed
            }),
            lcg
        );
    }
}
