//! Stop strings over streamed text: text that might be the start of a stop string is held back
//! until it is known not to be, so a stop string never reaches the caller, even split across tokens.

/// Watches streamed text for any of a set of stop strings.
#[derive(Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
}

impl StopMatcher {
    /// A matcher for `stops` (empty strings are ignored).
    pub fn new(stops: &[String]) -> Self {
        Self { stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(), held: String::new() }
    }

    /// Adds `text`; returns the text that is safe to show, and whether a stop string was reached
    /// (the stop string and anything after it are dropped).
    pub fn push(&mut self, text: &str) -> (String, bool) {
        self.held.push_str(text);
        if self.stops.is_empty() {
            return (std::mem::take(&mut self.held), false);
        }
        if let Some(at) = self.stops.iter().filter_map(|s| self.held.find(s.as_str())).min() {
            let ready = self.held[..at].to_owned();
            self.held.clear();
            return (ready, true);
        }
        // Hold back the longest tail that is a prefix of some stop string.
        let keep = self
            .stops
            .iter()
            .map(|stop| {
                (1..stop.len().min(self.held.len()) + 1)
                    .rev()
                    .find(|&n| {
                        self.held.is_char_boundary(self.held.len() - n)
                            && stop.starts_with(&self.held[self.held.len() - n..])
                    })
                    .unwrap_or(0)
            })
            .max()
            .unwrap_or(0);
        let split = self.held.len() - keep;
        let rest = self.held.split_off(split);
        (std::mem::replace(&mut self.held, rest), false)
    }

    /// The text still held back, at the end of the answer.
    pub fn flush(&mut self) -> Option<String> {
        (!self.held.is_empty()).then(|| std::mem::take(&mut self.held))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_string_split_across_pieces_is_caught_and_never_shown() {
        let mut m = StopMatcher::new(&["END".into()]);
        assert_eq!(m.push("Hello E"), ("Hello ".into(), false));
        assert_eq!(m.push("N"), (String::new(), false));
        assert_eq!(m.push("D and more"), (String::new(), true));
    }

    #[test]
    fn a_false_start_is_released() {
        let mut m = StopMatcher::new(&["END".into()]);
        assert_eq!(m.push("EN"), (String::new(), false));
        assert_eq!(m.push("ough"), ("ENough".into(), false));
        assert_eq!(m.flush(), None);
    }

    #[test]
    fn without_stops_everything_passes_and_multibyte_text_is_safe() {
        let mut m = StopMatcher::new(&[]);
        assert_eq!(m.push("été"), ("été".into(), false));
        let mut m = StopMatcher::new(&["éx".into()]);
        assert_eq!(m.push("aé"), ("a".into(), false));
        assert_eq!(m.flush(), Some("é".into()));
    }
}
