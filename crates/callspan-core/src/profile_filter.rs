//! Which functions the profile hook instruments: include/exclude globs over
//! `code.function.name` (module-qualified qualname), with library code kept out unless named.
//!
//! The hook decides once per code object (see `callspan-python`'s `hook` module); this is the
//! pure part of that decision.

/// A shell-style glob (`*`, `?`, `[...]`, `[!...]`) as `fnmatch` reads it, matched against a
/// whole `code.function.name`. A glob also matches everything inside what it names
/// (`imgpipe` matches `imgpipe.load`, `imgpipe.Transformer.apply`).
#[derive(Clone, Debug)]
pub struct Glob {
    pattern: Vec<char>,
    /// Starts with a wildcard: such a glob does not pull in library code by itself.
    broad: bool,
}

impl Glob {
    pub fn new(pattern: &str) -> Result<Glob, String> {
        let pattern = pattern.trim();
        if pattern.is_empty() {
            return Err("an empty glob matches no function".to_owned());
        }
        let chars: Vec<char> = pattern.chars().collect();
        Ok(Glob {
            broad: matches!(chars[0], '*' | '?' | '['),
            pattern: chars,
        })
    }

    pub fn matches(&self, name: &str) -> bool {
        let name: Vec<char> = name.chars().collect();
        if glob_match(&self.pattern, &name) {
            return true;
        }
        // `pattern.*`: everything inside the module, class or function the glob names.
        let mut inside = self.pattern.clone();
        inside.extend(['.', '*']);
        glob_match(&inside, &name)
    }
}

/// `fnmatch.fnmatchcase`: `*` matches any run of characters (dots too), `?` one character,
/// `[abc]`/`[a-z]`/`[!x]` one character of (not of) the set. Iterative with backtracking.
fn glob_match(pattern: &[char], name: &[char]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() {
            match pattern[p] {
                '*' => {
                    star = Some((p, n));
                    p += 1;
                    continue;
                }
                '?' => {
                    p += 1;
                    n += 1;
                    continue;
                }
                '[' => {
                    if let Some((matched, next)) = class_match(pattern, p, name[n]) {
                        if matched {
                            p = next;
                            n += 1;
                            continue;
                        }
                    } else if name[n] == '[' {
                        // An unclosed `[` is a literal, as in fnmatch.
                        p += 1;
                        n += 1;
                        continue;
                    }
                }
                c if c == name[n] => {
                    p += 1;
                    n += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, sn)) => {
                p = sp + 1;
                n = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// Whether `c` is in the set `[...]` starting at `pattern[start]`, and the index after it; None
/// when the set is not closed.
fn class_match(pattern: &[char], start: usize, c: char) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = matches!(pattern.get(i), Some('!'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let first = i;
    while i < pattern.len() && (pattern[i] != ']' || i == first) {
        if i + 2 < pattern.len() && pattern[i + 1] == '-' && pattern[i + 2] != ']' {
            matched |= pattern[i] <= c && c <= pattern[i + 2];
            i += 3;
        } else {
            matched |= pattern[i] == c;
            i += 1;
        }
    }
    (i < pattern.len()).then_some((matched != negate, i + 1))
}

/// What the profile session instruments.
#[derive(Clone, Debug)]
pub struct Filter {
    include: Vec<Glob>,
    exclude: Vec<Glob>,
    /// Path prefixes of the standard library and site-packages: their code matches only a glob
    /// that names it (not one starting with a wildcard).
    library: Vec<String>,
}

impl Filter {
    pub fn new(
        include: &[String],
        exclude: &[String],
        library: Vec<String>,
    ) -> Result<Filter, String> {
        let globs = |list: &[String], what: &str| {
            list.iter()
                .map(|g| Glob::new(g).map_err(|e| format!("{what} glob {g:?}: {e}")))
                .collect::<Result<Vec<_>, _>>()
        };
        let include = globs(include, "include")?;
        if include.is_empty() {
            return Err("no include glob: name the functions to profile (e.g. 'myapp.*')".into());
        }
        Ok(Filter {
            include,
            exclude: globs(exclude, "exclude")?,
            library,
        })
    }

    /// Whether calls of `name` (a `code.function.name`) defined in `file` are profiled.
    pub fn matches(&self, name: &str, file: &str) -> bool {
        // callspan itself is never profiled: its spans would describe the tool, not the program.
        if name == "callspan" || name.starts_with("callspan.") {
            return false;
        }
        let library = file.starts_with('<') || self.library.iter().any(|p| file.starts_with(p));
        self.include
            .iter()
            .any(|g| (!library || !g.broad) && g.matches(name))
            && !self.exclude.iter().any(|g| g.matches(name))
    }
}

/// A comprehension or generator expression: compiler-made functions no decorator can wrap.
pub fn is_comprehension(qualname: &str) -> bool {
    let last = qualname.rsplit('.').next().unwrap_or(qualname);
    last.starts_with('<') && (last.ends_with("comp>") || last == "<genexpr>")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(p: &str) -> Glob {
        Glob::new(p).unwrap()
    }

    #[test]
    fn globs_match_like_fnmatch_and_cover_what_they_name() {
        assert!(glob("imgpipe.*").matches("imgpipe.Transformer.apply"));
        assert!(glob("imgpipe").matches("imgpipe.load"));
        assert!(!glob("imgpipe").matches("imgpipe2.load"));
        assert!(glob("img?ipe.lo[a-z]d").matches("imgpipe.load"));
        assert!(!glob("imgpipe.[!l]*").matches("imgpipe.load"));
        assert!(glob("*.apply").matches("a.b.apply"));
        assert!(glob("a[").matches("a["));
        assert!(!glob("a.*.c").matches("a.c"));
    }

    #[test]
    fn library_code_needs_a_glob_that_names_it() {
        let f = Filter::new(&["*".into()], &[], vec!["/usr/lib/python3/".into()]).unwrap();
        assert!(f.matches("app.run", "/srv/app.py"));
        assert!(!f.matches("json.dumps", "/usr/lib/python3/json/__init__.py"));
        assert!(!f.matches("x.y", "<frozen importlib._bootstrap>"));
        let f = Filter::new(
            &["json".into()],
            &["json.decoder.*".into()],
            vec!["/usr/".into()],
        )
        .unwrap();
        assert!(f.matches("json.dumps", "/usr/lib/python3/json/__init__.py"));
        assert!(!f.matches("json.decoder.JSONDecoder.decode", "/usr/x.py"));
        assert!(!f.matches("callspan._trace.trace", "/srv/callspan/_trace.py"));
    }

    #[test]
    fn bad_filters_are_refused() {
        assert!(Filter::new(&[], &[], vec![]).is_err());
        assert!(Filter::new(&[" ".into()], &[], vec![]).is_err());
    }

    #[test]
    fn comprehensions_are_not_functions() {
        assert!(is_comprehension("f.<locals>.<listcomp>"));
        assert!(is_comprehension("<genexpr>"));
        assert!(!is_comprehension("f.<locals>.<lambda>"));
        assert!(!is_comprehension("Transformer.apply"));
    }
}
