//! [`RepetitionGuard`]: notices an answer that has started to loop — the same block of tokens
//! over and over — so generation can stop it instead of filling the length cap with copies.
//!
//! For every period `p` up to [`MAX_PERIOD`] tokens it keeps how many tokens in a row have equaled
//! the token `p` places before them: `O(MAX_PERIOD)` integer work per token, nothing next to a
//! forward pass. An answer loops when, for some `p`, that run covers two more copies of the last
//! `p` tokens (three in all) and at least [`MIN_REPEATED`] tokens: a short pattern must go on for
//! a while (a list of zeros, a ruler of dashes), a long paragraph must come back twice.

/// The longest block, in tokens, whose repetition is noticed (a long paragraph).
pub const MAX_PERIOD: usize = 256;

/// The fewest tokens that must repeat what came before before an answer counts as looping.
pub const MIN_REPEATED: usize = 96;

/// Copies of a block, the first included, that make a loop.
const COPIES: usize = 3;

/// Watches one answer's tokens for a loop.
#[derive(Debug, Clone)]
pub(crate) struct RepetitionGuard {
    tokens: Vec<u32>,
    /// `runs[p - 1]`: how many of the latest tokens in a row equal the token `p` places earlier.
    runs: Vec<usize>,
}

impl Default for RepetitionGuard {
    fn default() -> Self {
        Self { tokens: Vec::new(), runs: vec![0; MAX_PERIOD] }
    }
}

impl RepetitionGuard {
    /// Adds the next generated token; `true` when the answer now ends in a loop.
    pub(crate) fn push(&mut self, token: u32) -> bool {
        let at = self.tokens.len();
        self.tokens.push(token);
        let mut looping = false;
        for period in 1..=MAX_PERIOD.min(at) {
            let run = &mut self.runs[period - 1];
            *run = if self.tokens[at - period] == token { *run + 1 } else { 0 };
            looping |= *run >= MIN_REPEATED.max((COPIES - 1) * period);
        }
        looping
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The index of the token at which the guard first reports a loop.
    fn first_loop(tokens: impl IntoIterator<Item = u32>) -> Option<usize> {
        let mut guard = RepetitionGuard::default();
        tokens.into_iter().position(|t| guard.push(t))
    }

    #[test]
    fn a_paragraph_said_three_times_is_a_loop_at_the_end_of_its_third_copy() {
        let paragraph: Vec<u32> = (100..160).collect();
        let answer =
            [vec![1, 2, 3], paragraph.clone(), paragraph.clone(), paragraph.clone(), paragraph].concat();
        // 3 tokens of preamble, then the loop is known once the third copy is complete.
        assert_eq!(first_loop(answer), Some(3 + 3 * 60 - 1));
    }

    #[test]
    fn a_repeated_token_is_a_loop_only_after_a_long_run() {
        assert_eq!(first_loop(std::iter::repeat_n(7, 200)), Some(MIN_REPEATED));
        assert_eq!(first_loop(std::iter::repeat_n(7, MIN_REPEATED)), None);
    }

    #[test]
    fn varied_text_and_a_paragraph_said_twice_are_not_loops() {
        // A counting list repeats its structure but never its tokens.
        let list: Vec<u32> = (0..200u32).flat_map(|i| [10, 1000 + i, 11]).collect();
        assert_eq!(first_loop(list), None);
        let paragraph: Vec<u32> = (100..200).collect();
        assert_eq!(first_loop([paragraph.clone(), paragraph].concat()), None);
    }

    #[test]
    fn a_block_longer_than_the_longest_period_is_not_followed() {
        let long: Vec<u32> = (0..MAX_PERIOD as u32 + 1).collect();
        assert_eq!(first_loop([long.clone(), long.clone(), long].concat()), None);
    }
}
