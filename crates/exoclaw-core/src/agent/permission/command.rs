//! A shell command line split into the simple commands it runs, for command rules.
//!
//! `git status && rm -rf ~` must not pass as `git status`: a line is split at `;`, `&`, `&&`,
//! `|`, `||`, new lines, subshells and command substitutions (`$( … )`, backticks, also inside
//! double quotes), and each simple command is checked on its own. Quotes and backslashes are
//! removed from words (`"rm" -rf` is `rm -rf`); redirections and their targets are dropped
//! (`cargo test 2>&1 | tail` is `cargo test` and `tail`); comments are skipped.
//!
//! This is a guard for rules, not a shell: it errs towards more commands (so more questions),
//! never fewer. Deny and ask rules also look past what only wraps a command (`FOO=1`, `sudo`,
//! `env`, `nohup`, `timeout 5`, `!`, …) and into `sh -c '…'` and `eval '…'`; allow rules match
//! only from a command's first word.

/// One simple command of a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SimpleCommand {
    /// Its words, unquoted.
    pub words: Vec<String>,
    /// Where the command proper starts, past assignments and wrappers (`sudo`, `env`, …).
    pub core: usize,
    /// Found inside another command's `sh -c '…'` or `eval`: only deny and ask rules look at it
    /// (the outer command is what allow rules judge).
    pub nested: bool,
}

/// Words that run the command after them.
const WRAPPERS: &[&str] = &[
    "!", "{", "builtin", "command", "do", "doas", "elif", "else", "env", "exec", "if", "nice", "nohup",
    "then", "time", "timeout", "until", "while", "xargs", "sudo", "stdbuf", "ionice", "setsid",
];

/// Shells whose `-c` argument is itself a command line.
const SHELLS: &[&str] = &["sh", "bash", "zsh", "dash", "ksh", "fish"];

/// How deep `sh -c 'sh -c …'` is followed.
const MAX_DEPTH: u8 = 3;

/// The simple commands of `line`, in order.
pub(crate) fn parse(line: &str) -> Vec<SimpleCommand> {
    let mut out = Vec::new();
    parse_into(line, false, 0, &mut out);
    out
}

fn parse_into(line: &str, nested: bool, depth: u8, out: &mut Vec<SimpleCommand>) {
    for words in split(line) {
        let core = core_index(&words);
        let inner = inner_line(&words, core);
        out.push(SimpleCommand { words, core, nested });
        if let Some(inner) = inner
            && depth < MAX_DEPTH
        {
            parse_into(&inner, true, depth + 1, out);
        }
    }
}

/// Where the command proper starts: past `NAME=value` assignments, wrappers, and the options
/// and numbers that follow a wrapper (`nice -n 10`, `timeout 5s`).
fn core_index(words: &[String]) -> usize {
    let mut at = 0;
    let mut after_wrapper = false;
    while let Some(word) = words.get(at) {
        let skip = is_assignment(word)
            || WRAPPERS.contains(&word.as_str())
            || (after_wrapper && (word.starts_with('-') || is_number(word)));
        if !skip {
            break;
        }
        after_wrapper = after_wrapper || WRAPPERS.contains(&word.as_str());
        at += 1;
    }
    at.min(words.len())
}

fn is_assignment(word: &str) -> bool {
    match word.split_once('=') {
        Some((name, _)) => {
            name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
        None => false,
    }
}

/// `10`, `5s`, `1.5m`.
fn is_number(word: &str) -> bool {
    let digits = word.trim_end_matches(['s', 'm', 'h', 'd']);
    !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
}

/// The command line a `sh -c LINE` or `eval WORDS…` runs.
fn inner_line(words: &[String], core: usize) -> Option<String> {
    let command = words.get(core)?;
    if command == "eval" {
        return Some(words[core + 1..].join(" "));
    }
    if !SHELLS.contains(&command.as_str()) {
        return None;
    }
    let mut rest = words[core + 1..].iter();
    while let Some(word) = rest.next() {
        if !word.starts_with('-') {
            return None;
        }
        if !word.starts_with("--") && word.contains('c') {
            return rest.next().cloned();
        }
    }
    None
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quote {
    None,
    Single,
    Double,
}

/// What a `)` or closing backtick returns to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Paren(Quote),
    Backtick(Quote),
}

/// Builds the simple commands while the line is read.
#[derive(Default)]
struct Splitter {
    commands: Vec<Vec<String>>,
    words: Vec<String>,
    word: String,
    /// A quote started the word, so an empty one still counts.
    quoted: bool,
    /// The next word is a redirection's target, not part of the command.
    target: bool,
}

impl Splitter {
    fn push(&mut self, c: char) {
        self.word.push(c);
    }

    fn end_word(&mut self) {
        if self.word.is_empty() && !self.quoted {
            return;
        }
        let word = std::mem::take(&mut self.word);
        self.quoted = false;
        if std::mem::take(&mut self.target) {
            return;
        }
        self.words.push(word);
    }

    fn end_command(&mut self) {
        self.end_word();
        self.target = false;
        let words = std::mem::take(&mut self.words);
        if words.iter().any(|w| !w.is_empty()) {
            self.commands.push(words);
        }
    }

    /// A redirection operator starts: a file descriptor number right before it is not a word.
    fn redirect(&mut self) {
        if !self.quoted && !self.word.is_empty() && self.word.chars().all(|c| c.is_ascii_digit()) {
            self.word.clear();
        }
        self.end_word();
    }
}

/// `line` split into simple commands, each as its words.
fn split(line: &str) -> Vec<Vec<String>> {
    let mut s = Splitter::default();
    let mut chars = line.chars().peekable();
    let mut quote = Quote::None;
    let mut open: Vec<Open> = Vec::new();
    while let Some(c) = chars.next() {
        match quote {
            Quote::Single => match c {
                '\'' => quote = Quote::None,
                _ => s.push(c),
            },
            Quote::Double => match c {
                '"' => quote = Quote::None,
                '\\' => match chars.peek().copied() {
                    Some(n @ ('"' | '\\' | '$' | '`')) => {
                        s.push(n);
                        chars.next();
                    }
                    Some('\n') => {
                        chars.next();
                    }
                    _ => s.push('\\'),
                },
                '`' => {
                    s.end_command();
                    open.push(Open::Backtick(Quote::Double));
                    quote = Quote::None;
                }
                '$' if chars.peek() == Some(&'(') => {
                    chars.next();
                    s.end_command();
                    open.push(Open::Paren(Quote::Double));
                    quote = Quote::None;
                }
                _ => s.push(c),
            },
            Quote::None => match c {
                '\\' => {
                    if let Some(n) = chars.next()
                        && n != '\n'
                    {
                        s.push(n);
                    }
                }
                '\'' => {
                    quote = Quote::Single;
                    s.quoted = true;
                }
                '"' => {
                    quote = Quote::Double;
                    s.quoted = true;
                }
                ' ' | '\t' => s.end_word(),
                '#' if s.word.is_empty() && !s.quoted => {
                    // A comment, to the end of the line.
                    for n in chars.by_ref() {
                        if n == '\n' {
                            break;
                        }
                    }
                    s.end_command();
                }
                '$' if chars.peek() == Some(&'(') => {
                    chars.next();
                    s.end_command();
                    open.push(Open::Paren(Quote::None));
                }
                '(' => {
                    s.end_command();
                    open.push(Open::Paren(Quote::None));
                }
                ')' => {
                    s.end_command();
                    if let Some(Open::Paren(back)) = open.last().copied() {
                        open.pop();
                        quote = back;
                    }
                }
                '`' => {
                    s.end_command();
                    match open.last().copied() {
                        Some(Open::Backtick(back)) => {
                            open.pop();
                            quote = back;
                        }
                        _ => open.push(Open::Backtick(Quote::None)),
                    }
                }
                '&' if chars.peek() == Some(&'>') => {
                    chars.next();
                    s.redirect();
                    if chars.peek() == Some(&'>') {
                        chars.next();
                    }
                    s.target = true;
                }
                '>' | '<' => {
                    if c == '<' && chars.peek() == Some(&'(') {
                        chars.next();
                        s.end_command();
                        open.push(Open::Paren(Quote::None));
                        continue;
                    }
                    s.redirect();
                    while let Some(&n) = chars.peek() {
                        if matches!(n, '>' | '<' | '|' | '-') {
                            chars.next();
                        } else {
                            break;
                        }
                    }
                    if chars.peek() == Some(&'&') {
                        // `2>&1`, `>&-`: a descriptor, not a file.
                        chars.next();
                        while chars.peek().is_some_and(|n| n.is_ascii_digit() || *n == '-') {
                            chars.next();
                        }
                    } else {
                        s.target = true;
                    }
                }
                ';' | '&' | '|' | '\n' | '\r' => s.end_command(),
                _ => s.push(c),
            },
        }
    }
    s.end_command();
    s.commands
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn words(line: &str) -> Vec<Vec<String>> {
        parse(line).into_iter().map(|c| c.words).collect()
    }

    fn w(list: &[&[&str]]) -> Vec<Vec<String>> {
        list.iter().map(|c| c.iter().map(|s| (*s).to_owned()).collect()).collect()
    }

    #[test]
    fn a_line_splits_at_every_operator() {
        assert_eq!(words("git status --short"), w(&[&["git", "status", "--short"]]));
        assert_eq!(
            words("git status && rm -rf ~; ls | wc -l || true & sleep 1\necho done"),
            w(&[
                &["git", "status"],
                &["rm", "-rf", "~"],
                &["ls"],
                &["wc", "-l"],
                &["true"],
                &["sleep", "1"],
                &["echo", "done"]
            ])
        );
    }

    #[test]
    fn quotes_keep_operators_inside_words_and_are_removed() {
        assert_eq!(
            words(r#"git commit -m "fix; it | now""#),
            w(&[&["git", "commit", "-m", "fix; it | now"]])
        );
        assert_eq!(words(r#""rm" -rf 'a b' c\ d"#), w(&[&["rm", "-rf", "a b", "c d"]]));
    }

    #[test]
    fn substitutions_are_commands_of_their_own_even_inside_double_quotes() {
        assert_eq!(words("echo $(rm -rf x) `id`"), w(&[&["echo"], &["rm", "-rf", "x"], &["id"]]));
        assert_eq!(
            words(r#"echo "today: $(date +%F) ok""#),
            w(&[&["echo", "today: "], &["date", "+%F"], &[" ok"]])
        );
        assert_eq!(words("(cd src && make)"), w(&[&["cd", "src"], &["make"]]));
        assert_eq!(words("diff <(ls a) b"), w(&[&["diff"], &["ls", "a"], &["b"]]));
    }

    #[test]
    fn redirections_and_comments_are_not_commands() {
        assert_eq!(words("cargo test 2>&1 | tail -5"), w(&[&["cargo", "test"], &["tail", "-5"]]));
        assert_eq!(words("ls > out.txt 2>> err.log"), w(&[&["ls"]]));
        assert_eq!(words("make &> build.log"), w(&[&["make"]]));
        assert_eq!(words("ls # && rm -rf /"), w(&[&["ls"]]));
    }

    #[test]
    fn wrappers_and_assignments_are_skipped_to_find_the_command() {
        let cores = |line: &str| parse(line).iter().map(|c| c.words[c.core].clone()).collect::<Vec<_>>();
        assert_eq!(cores("FOO=1 BAR=2 rm -rf x"), ["rm"]);
        assert_eq!(cores("sudo -E nice -n 10 timeout 5s rm x"), ["rm"]);
        assert_eq!(cores("if true; then rm x; fi"), ["true", "rm", "fi"]);
    }

    #[test]
    fn shell_c_and_eval_are_looked_into() {
        let all = parse("bash -lc 'git push --force' && eval \"rm -rf x\"");
        let found: Vec<(Vec<String>, bool)> = all.into_iter().map(|c| (c.words, c.nested)).collect();
        assert_eq!(
            found,
            vec![
                (w(&[&["bash", "-lc", "git push --force"]]).remove(0), false),
                (w(&[&["git", "push", "--force"]]).remove(0), true),
                (w(&[&["eval", "rm -rf x"]]).remove(0), false),
                (w(&[&["rm", "-rf", "x"]]).remove(0), true),
            ]
        );
    }
}
