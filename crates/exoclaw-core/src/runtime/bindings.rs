//! The bindings router: which agent answers a message, from the configured `[[bindings]]`.
//!
//! A binding matches a message when every field it sets (`channel`, `account`, `peer`, `guild`,
//! `team`) equals the message's; unset fields match anything. Among the bindings that match, the
//! most specific wins, comparing which fields they set in the order peer > guild > team > account >
//! channel (a binding naming a peer beats any that does not; between two that both do, the one
//! that also names a guild wins, and so on); a tie goes to the one configured first. With no match
//! the default agent answers. [`Bindings::explain`] says all of that for one message, for
//! `exoclaw gateway routes --explain`.
//!
//! Whether each binding's agent exists is checked by whoever builds the [`Bindings`] (the CLI,
//! against the configured agents); the router only names agents.

use super::DEFAULT_AGENT;
use exoclaw_types::{Binding, Inbound};
use std::fmt;

/// The configured bindings, ready to match messages against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bindings {
    bindings: Vec<Binding>,
    default_agent: String,
}

impl Default for Bindings {
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

/// Where a message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The agent that answers.
    pub agent: String,
    /// The index (from 0, as in `bindings[N]`) of the binding that matched; `None` when no binding
    /// matched and the default agent answers.
    pub binding: Option<usize>,
    /// Why, in a sentence.
    pub reason: String,
}

/// What one binding made of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It matched and was the most specific: it routes the message.
    Chosen,
    /// It matched, but `winner` (an index) was more specific, or as specific and configured first.
    Outranked {
        /// The binding that won.
        winner: usize,
    },
    /// It did not match: these fields differ from the message's.
    Mismatch(Vec<FieldMismatch>),
}

/// One field a binding sets that the message does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldMismatch {
    /// `peer`, `guild`, `team`, `account` or `channel`.
    pub field: &'static str,
    /// The binding's value.
    pub wanted: String,
    /// The message's value (`None`: the message has none, e.g. no guild).
    pub got: Option<String>,
}

/// Every binding's verdict on one message, and the route that follows; its [`Display`] is what
/// `exoclaw gateway routes --explain` prints.
///
/// [`Display`]: fmt::Display
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The message's address.
    pub inbound: Inbound,
    /// Where it goes.
    pub route: Route,
    /// Each binding, in configured order, with its verdict.
    pub candidates: Vec<(Binding, Verdict)>,
}

/// The fields in order of precedence, with the binding's and the message's value of each.
fn fields<'a>(
    binding: &'a Binding,
    inbound: &'a Inbound,
) -> [(&'static str, Option<&'a str>, Option<&'a str>); 5] {
    [
        ("peer", binding.peer.as_deref(), Some(inbound.peer.as_str())),
        ("guild", binding.guild.as_deref(), inbound.guild.as_deref()),
        ("team", binding.team.as_deref(), inbound.team.as_deref()),
        ("account", binding.account.as_deref(), Some(inbound.account.as_str())),
        ("channel", binding.channel.as_deref(), Some(inbound.channel.as_str())),
    ]
}

/// Which fields a binding sets, as a number that orders bindings by specificity: peer is the
/// highest bit, channel the lowest.
fn specificity(binding: &Binding) -> u8 {
    [&binding.peer, &binding.guild, &binding.team, &binding.account, &binding.channel]
        .iter()
        .fold(0, |acc, field| (acc << 1) | u8::from(field.is_some()))
}

/// The fields a binding sets, `peer=alice channel=slack`, or `(matches everything)`.
fn describe(binding: &Binding) -> String {
    let set: Vec<String> = [
        ("peer", &binding.peer),
        ("guild", &binding.guild),
        ("team", &binding.team),
        ("account", &binding.account),
        ("channel", &binding.channel),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.as_ref().map(|v| format!("{name}={v}")))
    .collect();
    if set.is_empty() { "no fields (matches everything)".to_owned() } else { set.join(" ") }
}

fn mismatches(binding: &Binding, inbound: &Inbound) -> Vec<FieldMismatch> {
    fields(binding, inbound)
        .into_iter()
        .filter_map(|(field, wanted, got)| match wanted {
            Some(wanted) if got != Some(wanted) => {
                Some(FieldMismatch { field, wanted: wanted.to_owned(), got: got.map(str::to_owned) })
            }
            _ => None,
        })
        .collect()
}

impl Bindings {
    /// Bindings in their configured order, with [`DEFAULT_AGENT`] answering what none matches.
    pub fn new(bindings: Vec<Binding>) -> Self {
        Self { bindings, default_agent: DEFAULT_AGENT.to_owned() }
    }

    /// Sets the agent that answers messages no binding matches.
    pub fn with_default_agent(mut self, agent: impl Into<String>) -> Self {
        self.default_agent = agent.into();
        self
    }

    /// The bindings, in their configured order.
    pub fn list(&self) -> &[Binding] {
        &self.bindings
    }

    /// The agent that answers messages no binding matches.
    pub fn default_agent(&self) -> &str {
        &self.default_agent
    }

    /// The index of the binding that routes `inbound`, if any.
    fn winner(&self, inbound: &Inbound) -> Option<usize> {
        let mut best: Option<(usize, u8)> = None;
        for (index, binding) in self.bindings.iter().enumerate() {
            if !mismatches(binding, inbound).is_empty() {
                continue;
            }
            let score = specificity(binding);
            // Strictly greater: on a tie the one configured first stays.
            if best.is_none_or(|(_, top)| score > top) {
                best = Some((index, score));
            }
        }
        best.map(|(index, _)| index)
    }

    /// Which agent answers `inbound`, and why.
    pub fn route(&self, inbound: &Inbound) -> Route {
        match self.winner(inbound) {
            Some(index) => {
                let binding = &self.bindings[index];
                Route {
                    agent: binding.agent.clone(),
                    binding: Some(index),
                    reason: format!("bindings[{index}] matched ({})", describe(binding)),
                }
            }
            None => Route {
                agent: self.default_agent.clone(),
                binding: None,
                reason: if self.bindings.is_empty() {
                    "no bindings are configured; the default agent answers".to_owned()
                } else {
                    "no binding matched; the default agent answers".to_owned()
                },
            },
        }
    }

    /// The route of `inbound` with every binding's verdict: which matched and won, which matched
    /// but was outranked, and which did not match because of which fields.
    pub fn explain(&self, inbound: &Inbound) -> Explanation {
        let route = self.route(inbound);
        let candidates = self
            .bindings
            .iter()
            .enumerate()
            .map(|(index, binding)| {
                let missed = mismatches(binding, inbound);
                let verdict = match route.binding {
                    _ if !missed.is_empty() => Verdict::Mismatch(missed),
                    Some(winner) if winner == index => Verdict::Chosen,
                    Some(winner) => Verdict::Outranked { winner },
                    // Unreachable in practice: a binding that matches makes `route.binding` Some.
                    None => Verdict::Chosen,
                };
                (binding.clone(), verdict)
            })
            .collect();
        Explanation { inbound: inbound.clone(), route, candidates }
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.inbound;
        let none = "-".to_owned();
        writeln!(
            f,
            "message: channel={} account={} peer={} guild={} team={}",
            m.channel,
            m.account,
            m.peer,
            m.guild.as_ref().unwrap_or(&none),
            m.team.as_ref().unwrap_or(&none),
        )?;
        writeln!(f, "agent:   {} ({})", self.route.agent, self.route.reason)?;
        for (index, (binding, verdict)) in self.candidates.iter().enumerate() {
            let head = format!("bindings[{index}] agent={} {}", binding.agent, describe(binding));
            match verdict {
                Verdict::Chosen => writeln!(f, "  {head}: matched, chosen (the most specific match)")?,
                Verdict::Outranked { winner } => {
                    let won = &self.candidates[*winner].0;
                    let why = if specificity(won) == specificity(binding) {
                        "as specific, and configured earlier"
                    } else {
                        "more specific (peer > guild > team > account > channel)"
                    };
                    writeln!(f, "  {head}: matched, but bindings[{winner}] is {why}")?;
                }
                Verdict::Mismatch(missed) => {
                    let why: Vec<String> = missed
                        .iter()
                        .map(|m| match &m.got {
                            Some(got) => format!("{} is `{got}`, not `{}`", m.field, m.wanted),
                            None => format!("the message has no {} (wanted `{}`)", m.field, m.wanted),
                        })
                        .collect();
                    writeln!(f, "  {head}: no match: {}", why.join("; "))?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(agent: &str, fields: &[(&str, &str)]) -> Binding {
        let mut b = Binding {
            agent: agent.into(),
            channel: None,
            account: None,
            peer: None,
            guild: None,
            team: None,
        };
        for (name, value) in fields {
            let slot = match *name {
                "channel" => &mut b.channel,
                "account" => &mut b.account,
                "peer" => &mut b.peer,
                "guild" => &mut b.guild,
                "team" => &mut b.team,
                other => panic!("no field {other}"),
            };
            *slot = Some((*value).to_owned());
        }
        b
    }

    fn inbound(channel: &str, account: &str, peer: &str) -> Inbound {
        Inbound {
            channel: channel.into(),
            account: account.into(),
            peer: peer.into(),
            guild: None,
            team: None,
        }
    }

    #[test]
    fn the_most_specific_match_wins_in_precedence_order() {
        let bindings = Bindings::new(vec![
            binding("by-channel", &[("channel", "slack")]),
            binding("by-account", &[("account", "acme")]),
            binding("by-team", &[("team", "t1")]),
            binding("by-guild", &[("guild", "g1")]),
            binding("by-peer", &[("peer", "alice")]),
        ]);
        let mut m = inbound("slack", "acme", "alice");
        m.guild = Some("g1".into());
        m.team = Some("t1".into());
        assert_eq!(bindings.route(&m).agent, "by-peer");
        m.peer = "bob".into();
        assert_eq!(bindings.route(&m).agent, "by-guild");
        m.guild = None;
        assert_eq!(bindings.route(&m).agent, "by-team");
        m.team = None;
        assert_eq!(bindings.route(&m).agent, "by-account");
        m.account = "other".into();
        assert_eq!(bindings.route(&m).agent, "by-channel");
        m.channel = "discord".into();
        let route = bindings.route(&m);
        assert_eq!((route.agent.as_str(), route.binding), (DEFAULT_AGENT, None));
    }

    #[test]
    fn every_set_field_must_match_and_ties_go_to_the_first() {
        let bindings = Bindings::new(vec![
            binding("peer-on-slack", &[("peer", "alice"), ("channel", "slack")]),
            binding("first", &[("peer", "alice")]),
            binding("second", &[("peer", "alice")]),
        ])
        .with_default_agent("fallback");
        // On discord the two-field binding does not match; of the tied others the first wins.
        assert_eq!(bindings.route(&inbound("discord", "a", "alice")).agent, "first");
        // On slack, peer+channel is more specific than peer alone.
        assert_eq!(bindings.route(&inbound("slack", "a", "alice")).agent, "peer-on-slack");
        assert_eq!(bindings.route(&inbound("slack", "a", "carol")).agent, "fallback");
        // A peer alone outranks everything short of a peer.
        let b = Bindings::new(vec![
            binding("everything-else", &[("guild", "g"), ("team", "t"), ("account", "a"), ("channel", "c")]),
            binding("peer", &[("peer", "p")]),
        ]);
        let mut m = inbound("c", "a", "p");
        m.guild = Some("g".into());
        m.team = Some("t".into());
        assert_eq!(b.route(&m).agent, "peer");
    }

    #[test]
    fn explain_says_which_won_and_why_the_others_did_not() {
        let bindings = Bindings::new(vec![
            binding("support", &[("channel", "ws")]),
            binding("vip", &[("peer", "alice")]),
            binding("vip-too", &[("peer", "alice")]),
            binding("discord", &[("guild", "g1"), ("channel", "ws")]),
        ]);
        let explanation = bindings.explain(&inbound("ws", "acct", "alice"));
        assert_eq!(explanation.route.binding, Some(1));
        assert_eq!(explanation.candidates[0].1, Verdict::Outranked { winner: 1 });
        assert_eq!(explanation.candidates[1].1, Verdict::Chosen);
        assert_eq!(explanation.candidates[2].1, Verdict::Outranked { winner: 1 });
        let Verdict::Mismatch(missed) = &explanation.candidates[3].1 else { panic!("{explanation:?}") };
        assert_eq!(missed, &[FieldMismatch { field: "guild", wanted: "g1".into(), got: None }]);
        let text = explanation.to_string();
        assert!(text.contains("agent:   vip (bindings[1] matched (peer=alice))"), "{text}");
        assert!(
            text.contains("bindings[0] agent=support channel=ws: matched, but bindings[1] is more specific"),
            "{text}"
        );
        assert!(text.contains("bindings[2] agent=vip-too peer=alice: matched, but bindings[1] is as specific, and configured earlier"), "{text}");
        assert!(text.contains("bindings[3] agent=discord guild=g1 channel=ws: no match: the message has no guild (wanted `g1`)"), "{text}");
        let other = bindings.explain(&inbound("slack", "acct", "bob")).to_string();
        assert!(
            other.contains("agent:   default (no binding matched; the default agent answers)"),
            "{other}"
        );
        assert!(other.contains("no match: channel is `slack`, not `ws`"), "{other}");
    }
}
