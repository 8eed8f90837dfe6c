//! Planning landlock rules: turning "read everything, write these roots, except the hidden paths"
//! into the allow-list landlock takes.
//!
//! Landlock only grants: a rule on a directory allows its access to everything beneath it, and
//! nothing can take part of it back. So a grant whose root has a hidden path somewhere below it is
//! *split*: instead of the root, each entry of it is granted except the one leading to the hidden
//! path, and that one is split in turn, down to the hidden path, which is left out. The directories
//! split on the way get [`Access::ListOnly`], so `ls /` and `ls ~` still work; the price is that the
//! *names* beneath them (the hidden path's own entries included) can be listed, though no hidden
//! file can be read, run or written.
//!
//! Symbolic links found while splitting get no rule of their own: landlock judges a file by where
//! it really is, so a link is followed to a target that has (or lacks) its own rule. Granting the
//! link would grant its target, which might be a hidden path.
//!
//! [`plan`] is pure: the directory listing is a function the caller gives (the real file system in
//! the sandbox, a fake one in the tests).

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// What a directory entry is, without following symbolic links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Dir,
    Symlink,
    /// A regular file, a device, a socket, a pipe.
    File,
}

/// An entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub name: OsString,
    pub kind: Kind,
}

impl Entry {
    #[cfg(test)]
    pub fn new(name: &str, kind: Kind) -> Self {
        Self { name: name.into(), kind }
    }
}

/// What a rule allows, from least to most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Access {
    /// Listing directories (names only): a directory split on the way to a hidden path.
    ListOnly,
    /// Reading files, listing directories, running programs.
    Read,
    /// Everything: reading, writing, creating, removing, truncating, device ioctls.
    ReadWrite,
}

/// A path to allow, and how much.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Rule {
    pub path: PathBuf,
    pub access: Access,
    /// Whether `path` is a directory: landlock refuses directory-only rights on a file.
    pub dir: bool,
}

impl Rule {
    pub fn new(path: impl Into<PathBuf>, access: Access, dir: bool) -> Self {
        Self { path: path.into(), access, dir }
    }
}

/// The rules that grant each of `grants` except the `hidden` paths, listing directories with
/// `list`. Every path is expected absolute and canonical (symbolic links resolved).
///
/// A grant whose root *is* a hidden path or lies inside one is kept whole: it was asked for by
/// name (a workspace inside exoclaw's home, for one), so it wins over the hiding.
///
/// The result is sorted and free of duplicates.
pub(crate) fn plan(
    grants: &[Rule],
    hidden: &[PathBuf],
    mut list: impl FnMut(&Path) -> Vec<Entry>,
) -> Vec<Rule> {
    let mut rules = BTreeSet::new();
    for grant in grants {
        let below: Vec<&Path> =
            hidden.iter().map(PathBuf::as_path).filter(|h| is_strictly_under(h, &grant.path)).collect();
        if below.is_empty() || !grant.dir {
            rules.insert(grant.clone());
        } else {
            split(&grant.path, grant.access, &below, &mut list, &mut rules);
        }
    }
    rules.into_iter().collect()
}

/// Grants `access` on every entry of `dir` except the hidden paths in `hidden` (all strictly under
/// `dir`), splitting the entries that lead to one.
fn split(
    dir: &Path,
    access: Access,
    hidden: &[&Path],
    list: &mut impl FnMut(&Path) -> Vec<Entry>,
    rules: &mut BTreeSet<Rule>,
) {
    rules.insert(Rule::new(dir, Access::ListOnly, true));
    for entry in list(dir) {
        let path = dir.join(&entry.name);
        if hidden.contains(&path.as_path()) {
            continue;
        }
        let deeper: Vec<&Path> = hidden.iter().copied().filter(|h| is_strictly_under(h, &path)).collect();
        match (entry.kind, deeper.is_empty()) {
            (Kind::Symlink, _) => {}
            (Kind::Dir, false) => split(&path, access, &deeper, list, rules),
            // A file cannot have a hidden path beneath it; it is granted like any other.
            (Kind::Dir, true) => {
                rules.insert(Rule::new(path, access, true));
            }
            (Kind::File, _) => {
                rules.insert(Rule::new(path, access, false));
            }
        }
    }
}

/// Whether `path` lies beneath `root` and is not `root` itself (component-wise, so `/ab` is not
/// under `/a`).
fn is_strictly_under(path: &Path, root: &Path) -> bool {
    path != root && path.starts_with(root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use std::collections::BTreeMap;

    /// A fake file system: directory → its entries.
    fn fs(dirs: &[(&str, &[(&str, Kind)])]) -> BTreeMap<PathBuf, Vec<Entry>> {
        dirs.iter()
            .map(|(dir, entries)| {
                (PathBuf::from(dir), entries.iter().map(|(name, kind)| Entry::new(name, *kind)).collect())
            })
            .collect()
    }

    fn run(grants: &[Rule], hidden: &[&str], tree: &BTreeMap<PathBuf, Vec<Entry>>) -> Vec<(String, Access)> {
        let hidden: Vec<PathBuf> = hidden.iter().map(PathBuf::from).collect();
        plan(grants, &hidden, |dir| tree.get(dir).cloned().unwrap_or_default())
            .into_iter()
            .map(|rule| (rule.path.display().to_string(), rule.access))
            .collect()
    }

    fn owned(rules: &[(&str, Access)]) -> Vec<(String, Access)> {
        rules.iter().map(|(p, a)| ((*p).to_owned(), *a)).collect()
    }

    use Access::{ListOnly, Read, ReadWrite};
    use Kind::{Dir, File, Symlink};

    fn tree() -> BTreeMap<PathBuf, Vec<Entry>> {
        fs(&[
            (
                "/",
                &[
                    ("bin", Symlink),
                    ("etc", Dir),
                    ("home", Dir),
                    ("tmp", Dir),
                    ("usr", Dir),
                    ("vmlinuz", File),
                ],
            ),
            ("/home", &[("ann", Dir), ("bob", Dir)]),
            (
                "/home/ann",
                &[(".bashrc", File), (".exoclaw", Dir), ("notes", Symlink), ("project", Dir), (".ssh", Dir)],
            ),
            ("/home/ann/.exoclaw", &[("config.toml", File), ("exoclaw.db", File), ("workspace", Dir)]),
        ])
    }

    #[test]
    fn without_hidden_paths_every_grant_is_one_rule() {
        let grants = [Rule::new("/", Read, true), Rule::new("/home/ann/project", ReadWrite, true)];
        assert_eq!(run(&grants, &[], &tree()), owned(&[("/", Read), ("/home/ann/project", ReadWrite)]));
    }

    #[test]
    fn reading_everything_but_a_hidden_directory_grants_its_siblings_along_the_way() {
        let grants = [Rule::new("/", Read, true)];
        assert_eq!(
            run(&grants, &["/home/ann/.exoclaw"], &tree()),
            owned(&[
                ("/", ListOnly),
                // `/bin` is a symbolic link: it gets no rule, its target (`/usr/bin`) is under `/usr`.
                ("/etc", Read),
                ("/home", ListOnly),
                ("/home/ann", ListOnly),
                ("/home/ann/.bashrc", Read),
                // `notes` is a link too: it might point into the hidden directory.
                ("/home/ann/.ssh", Read),
                ("/home/ann/project", Read),
                ("/home/bob", Read),
                ("/tmp", Read),
                ("/usr", Read),
                ("/vmlinuz", Read),
            ])
        );
    }

    #[test]
    fn hiding_files_inside_a_directory_keeps_the_rest_of_it() {
        let grants = [Rule::new("/home", Read, true)];
        let hidden = ["/home/ann/.exoclaw/config.toml", "/home/ann/.exoclaw/exoclaw.db", "/home/ann/.ssh"];
        assert_eq!(
            run(&grants, &hidden, &tree()),
            owned(&[
                ("/home", ListOnly),
                ("/home/ann", ListOnly),
                ("/home/ann/.bashrc", Read),
                ("/home/ann/.exoclaw", ListOnly),
                ("/home/ann/.exoclaw/workspace", Read),
                ("/home/ann/project", Read),
                ("/home/bob", Read),
            ])
        );
    }

    #[test]
    fn a_hidden_path_that_does_not_exist_yet_stays_hidden_once_created() {
        // `keys` is not in the listing: everything else in `.exoclaw` is granted one by one, never
        // `.exoclaw` as a whole, so a `keys` created later falls under no rule.
        let grants = [Rule::new("/home/ann/.exoclaw", Read, true)];
        assert_eq!(
            run(&grants, &["/home/ann/.exoclaw/keys"], &tree()),
            owned(&[
                ("/home/ann/.exoclaw", ListOnly),
                ("/home/ann/.exoclaw/config.toml", Read),
                ("/home/ann/.exoclaw/exoclaw.db", Read),
                ("/home/ann/.exoclaw/workspace", Read),
            ])
        );
    }

    #[test]
    fn a_workspace_inside_a_hidden_directory_is_still_granted() {
        let grants =
            [Rule::new("/home", Read, true), Rule::new("/home/ann/.exoclaw/workspace", ReadWrite, true)];
        assert_eq!(
            run(&grants, &["/home/ann/.exoclaw"], &tree()),
            owned(&[
                ("/home", ListOnly),
                ("/home/ann", ListOnly),
                ("/home/ann/.bashrc", Read),
                ("/home/ann/.exoclaw/workspace", ReadWrite),
                ("/home/ann/.ssh", Read),
                ("/home/ann/project", Read),
                ("/home/bob", Read),
            ])
        );
    }

    #[test]
    fn a_writable_root_holding_a_hidden_path_is_split_too() {
        // Running exoclaw with the home directory as its workspace.
        let grants = [Rule::new("/home/ann", ReadWrite, true)];
        assert_eq!(
            run(&grants, &["/home/ann/.exoclaw"], &tree()),
            owned(&[
                ("/home/ann", ListOnly),
                ("/home/ann/.bashrc", ReadWrite),
                ("/home/ann/.ssh", ReadWrite),
                ("/home/ann/project", ReadWrite),
            ])
        );
    }

    #[test]
    fn paths_are_compared_by_component_and_files_are_never_split() {
        // `/home/an` is not under `/home/ann`; a grant on a file stays whole.
        let grants = [Rule::new("/home/ann/.bashrc", ReadWrite, false), Rule::new("/home/bob", Read, true)];
        assert_eq!(
            run(&grants, &["/home/an", "/home/ann/.bashrc/x", "/home/bobby"], &tree()),
            owned(&[("/home/ann/.bashrc", ReadWrite), ("/home/bob", Read)])
        );
    }

    #[test]
    fn a_hidden_grant_root_is_granted_whole() {
        let grants = [Rule::new("/home/ann/.exoclaw", Read, true)];
        assert_eq!(run(&grants, &["/home/ann/.exoclaw"], &tree()), owned(&[("/home/ann/.exoclaw", Read)]));
    }
}
