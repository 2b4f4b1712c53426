//! Hostile tar.gz archives through the stager's unpacker (`paas_stager::archive`). The
//! input is read as a short list of entries (file, folder, symlink, hardlink, char device)
//! whose names and link targets are made of a few path pieces, `..`, `/` and absolute
//! paths to the sandbox among them, so the fuzzer meets the link tricks quickly, and of
//! pieces that repeat a name up to 2048 times, so paths deep and long enough for the
//! checker's bounds (4 KiB paths, its work budget) are reachable too. Each entry's name
//! and link target go in its own header (v7, cut to 100 bytes), in a GNU long-name or
//! long-link member, or in a PAX extended header before it; an entry may also bring a
//! PAX global header, a further PAX record (`size`, `GNU.sparse.*`, ...) or a stray
//! long-name or PAX member of more than 64 KiB. The members go into a tar.gz with their
//! raw names (the tar crate's own path checks bypassed), which is then, inside a fresh
//! sandbox `O/S` holding `S/dest`, `S/dest2` and a file `S/secret`, with each policy
//! (upload, droplet):
//! - scanned and unpacked into the empty `S/dest`: both must accept it or both refuse it;
//! - cut in two where the input says, the first part unpacked into the empty `S/dest2`
//!   and the second over what the first left there (its links included); errors are fine.
//!
//! After every unpack, nothing has landed outside: `O` holds only `S`, `S` only `dest`,
//! `dest2` and `secret` (folders, not links), and `secret` is still the same file, with
//! its content, mode and owner and no second name. After an upload unpacked into an empty
//! folder, every symlink in it that resolves at all resolves inside it. A failed check
//! panics, with the member list in the message. An input that costs much to check (deep
//! paths, big stray members: [`KEEP_COST`]) is checked all the same but not kept in the
//! corpus. Run with `stager/fuzz/run.sh`; with `FUZZ_SHOW=1` in the environment, each
//! input run prints its members, its cost and what each scan and unpack returned.
#![no_main]

use std::collections::HashSet;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::Read as _;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use libfuzzer_sys::{fuzz_target, Corpus};
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, Mode, SFlag};
use paas_stager::archive::{self, ArchiveError, ArchivePolicy, ArchiveStats};

/// What names and link targets are made of, joined with `/`. `$S` and `$O` stand for the
/// absolute paths of the sandbox `S` and of its parent `O`.
const PIECES: [&str; 11] = [
    "a", "b", "c", ".", "..", "/", "x/y", "secret", "dest", "$S", "$O",
];
/// A piece byte from this one up is a repeat: one of [`REPEATED`] (by its low two bits),
/// as many times as the next byte says ([`repeats`]: 1 to 2048), joined with `/`.
const REPEAT_FROM: u8 = 0xf0;
/// Deep paths, long ways up, `.`s, and long paths of few names (16 of the longest name
/// a file system takes make 4095 bytes; a few more make an extended header over 64 KiB).
const REPEATED: [&str; 4] = ["a", "..", ".", LONG_NAME];
const LONG_NAME: &str = concat!(
    "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn",
    "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn",
    "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn",
);
/// `$S/secret`: what the header's own name and link fields hold instead of the cut name
/// when an entry asks for a decoy (its name then carried elsewhere).
const DECOY: [Piece; 2] = [Piece::Fixed(9), Piece::Fixed(7)];
const MAX_ENTRIES: usize = 16;
const SECRET: &[u8] = b"host secret";
const SECRET_MODE: u32 = 0o640;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink,
    Hardlink,
    CharDevice,
}

const KINDS: [Kind; 5] = [
    Kind::File,
    Kind::Dir,
    Kind::Symlink,
    Kind::Hardlink,
    Kind::CharDevice,
];

/// A piece of a name: an index into [`PIECES`], or an index into [`REPEATED`] and a count.
#[derive(Debug, Clone, Copy)]
enum Piece {
    Fixed(u8),
    Repeat(u8, u16),
}

/// How a name or link target reaches the reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// In the entry's own header, cut to its 100 bytes.
    Header,
    /// In a GNU long-name ('L') or long-link ('K') member just before the entry,
    /// NUL-terminated (as GNU tar writes it) or not.
    Gnu { nul: bool },
    /// As `path` or `linkpath` in a PAX extended header ('x') just before the entry.
    Pax,
}

const VIAS: [Via; 4] = [
    Via::Header,
    Via::Gnu { nul: true },
    Via::Pax,
    Via::Gnu { nul: false },
];

/// What else an entry brings along.
#[derive(Debug, Clone, Copy)]
enum Extra {
    None,
    /// One more record, last, in the entry's PAX header (which it then has, whatever
    /// carries its names).
    Record(Record),
    /// A PAX global header ('g') first, with a `path` (the entry's name, or the decoy).
    Global,
    /// A stray PAX header ('x': one `comment` record) or GNU long name ('L': all `a`)
    /// first, of `size` bytes: 65536 (the most the stager reads), 65537, or more, to
    /// 64 KiB + 2 MiB. Its data is generated, never part of the input.
    Stray {
        pax: bool,
        size: u64,
    },
}

/// A PAX record beside `path` and `linkpath`.
#[derive(Debug, Clone, Copy)]
enum Record {
    /// `mtime`, which changes nothing here.
    Mtime,
    /// `size`, the content's: sizes from PAX are refused.
    Size,
    /// `GNU.sparse.major` or `GNU.sparse.map`: a sparse file, refused.
    Sparse { map: bool },
    /// An empty `path` or `linkpath`, after the entry's own.
    Empty { link: bool },
}

/// One entry, its name and target as pieces.
struct Entry {
    kind: Kind,
    name: Vec<Piece>,
    link: Vec<Piece>,
    content: Vec<u8>,
    name_via: Via,
    /// For links only; others have no target to carry.
    link_via: Via,
    /// The header's own fields hold [`DECOY`] where the name or target is carried
    /// elsewhere (else they hold its first 100 bytes, as GNU tar writes them).
    decoy: bool,
    extra: Extra,
}

/// How many times a repeat piece repeats, by its count byte `b`: `b + 1` (1 to 240), or
/// for `b` from 0xf0, 2048 down to 248 in steps of 120. A path of depth D and length L
/// costs the stager about D × L in each of the ten scans and unpacks of an input, which
/// for 2048 `a`s comes to seconds (see [`KEEP_COST`]): deep paths come from 16 values of
/// the byte only (and 0xff, which mutations favour, is the shallowest of them), while
/// 240 levels, past libFuzzer's last hit-count bucket (128), cost little.
fn repeats(b: u8) -> u16 {
    match b {
        0..=0xef => u16::from(b) + 1,
        _ => 2048 - 120 * u16::from(b - 0xf0),
    }
}

/// The input, a byte at a time; a missing byte reads as 0.
struct Input<'a>(std::slice::Iter<'a, u8>);

impl Input<'_> {
    fn next(&mut self) -> Option<u8> {
        self.0.next().copied()
    }

    fn byte(&mut self) -> u8 {
        self.next().unwrap_or(0)
    }

    /// `n` pieces: a byte each, and a count byte after a repeat.
    fn pieces(&mut self, n: u8) -> Vec<Piece> {
        (0..n)
            .map(|_| match self.byte() {
                b if b >= REPEAT_FROM => Piece::Repeat(b & 3, repeats(self.byte())),
                b => Piece::Fixed(b % PIECES.len() as u8),
            })
            .collect()
    }
}

/// Reads the input as: a byte for where to cut the list, then per entry
/// - a byte for its kind;
/// - a byte for its sizes: bits 0-1, name pieces - 1; bits 2-4, target pieces mod 5 (for
///   links); bits 5-6, content bytes (for files); bit 7, a carriage byte follows;
/// - the carriage byte (else all 0): bits 0-1, how the name is carried, and bits 2-3,
///   the link target ([`VIAS`]: header, GNU member, PAX record, GNU member with no NUL);
///   bit 4, a decoy in the header; bits 5-6, an extra (none, a PAX record, a PAX global
///   header, a stray member), the last two with a byte of their own: for a record, bits
///   0-1 which ([`Record`]) and bit 2 its variant; for a stray, bit 0 set for 'L' (clear
///   for 'x') and bits 1-7 `n` for a size of 65536 + 2^(n mod 22) - 1 (64 KiB, the most
///   the stager reads, 1 byte more, ..., 2 MiB more; 0x00 and 0xff, which mutations
///   favour, give small ones, as the data is copied a few times a run);
/// - then its name pieces (a byte each: below [`REPEAT_FROM`], an index into [`PIECES`]
///   mod 11; else a repeat, with a count byte after it), target pieces and content bytes.
fn decode(data: &[u8]) -> (u8, Vec<Entry>) {
    let mut input = Input(data.iter());
    let cut = input.byte();
    let mut entries = Vec::new();
    while entries.len() < MAX_ENTRIES {
        let Some(k) = input.next() else { break };
        let kind = KINDS[usize::from(k) % KINDS.len()];
        let sizes = input.byte();
        let carry = if sizes & 0x80 != 0 { input.byte() } else { 0 };
        let extra = match (carry >> 5) & 3 {
            0 => Extra::None,
            1 => {
                let r = input.byte();
                let variant = r & 4 != 0;
                Extra::Record(match r & 3 {
                    0 => Record::Mtime,
                    1 => Record::Size,
                    2 => Record::Sparse { map: variant },
                    _ => Record::Empty { link: variant },
                })
            }
            2 => Extra::Global,
            _ => {
                let t = input.byte();
                Extra::Stray {
                    pax: t & 1 == 0,
                    size: 65536 + (1 << ((t >> 1) % 22)) - 1,
                }
            }
        };
        let name = input.pieces(1 + (sizes & 3));
        let link = match kind {
            Kind::Symlink | Kind::Hardlink => input.pieces(((sizes >> 2) & 7) % 5),
            _ => Vec::new(),
        };
        let content = match kind {
            Kind::File => (0..(sizes >> 5) & 3).map(|_| input.byte()).collect(),
            _ => Vec::new(),
        };
        entries.push(Entry {
            kind,
            name,
            link,
            content,
            name_via: VIAS[usize::from(carry & 3)],
            link_via: VIAS[usize::from((carry >> 2) & 3)],
            decoy: carry & 16 != 0,
            extra,
        });
    }
    (cut, entries)
}

/// The path the pieces make, `$S` and `$O` replaced by `s` and `o`.
fn render(pieces: &[Piece], s: &str, o: &str) -> String {
    let mut out = String::new();
    for (i, p) in pieces.iter().enumerate() {
        if i > 0 {
            out.push('/');
        }
        match *p {
            Piece::Fixed(f) => out.push_str(match PIECES[usize::from(f)] {
                "$S" => s,
                "$O" => o,
                p => p,
            }),
            Piece::Repeat(r, n) => {
                for j in 0..n {
                    if j > 0 {
                        out.push('/');
                    }
                    out.push_str(REPEATED[usize::from(r)]);
                }
            }
        }
    }
    out
}

/// The path as a reader can follow it: `$S` and `$O` left as such, and `<a ×N>` for N
/// copies of `a` joined with `/`.
fn show(pieces: &[Piece]) -> String {
    let mut out = String::new();
    for (i, p) in pieces.iter().enumerate() {
        if i > 0 {
            out.push('/');
        }
        match *p {
            Piece::Fixed(f) => out.push_str(PIECES[usize::from(f)]),
            Piece::Repeat(r, n) => {
                let _ = write!(out, "<{} ×{n}>", REPEATED[usize::from(r)]);
            }
        }
    }
    out
}

/// The header format of an entry's members: GNU where a GNU member is among them, else
/// ustar where a PAX one is, else v7.
#[derive(Debug, Clone, Copy)]
enum Format {
    V7,
    Ustar,
    Gnu,
}

/// One tar member as written.
struct Member {
    typ: tar::EntryType,
    format: Format,
    /// The header's name and link fields (cut to their 100 bytes when written).
    name: String,
    link: String,
    data: Data,
}

enum Data {
    /// Written as they are: a file's content, a GNU long name.
    Bytes(Vec<u8>),
    /// PAX records, each written as `LEN key=value\n`.
    Pax(Vec<(&'static str, String)>),
    /// That many generated bytes: one PAX `comment` record for an 'x', `a`s for an 'L'.
    Filler(u64),
}

/// The members that write `e`, in order, its names and targets made by `text`.
fn members(e: &Entry, text: &dyn Fn(&[Piece]) -> String) -> Vec<Member> {
    use tar::EntryType as T;
    let is_link = matches!(e.kind, Kind::Symlink | Kind::Hardlink);
    let link_via = if is_link { e.link_via } else { Via::Header };
    let vias = [e.name_via, link_via];
    let gnu = vias.iter().any(|v| matches!(v, Via::Gnu { .. }))
        || matches!(e.extra, Extra::Stray { pax: false, .. });
    let pax = vias.contains(&Via::Pax) || !matches!(e.extra, Extra::None);
    let format = match (gnu, pax) {
        (true, _) => Format::Gnu,
        (false, true) => Format::Ustar,
        (false, false) => Format::V7,
    };
    let meta = |typ, name: &str, data| Member {
        typ,
        format,
        name: name.to_owned(),
        link: String::new(),
        data,
    };
    let long = |p: &[Piece], nul: bool| {
        let mut d = text(p).into_bytes();
        if nul {
            d.push(0);
        }
        Data::Bytes(d)
    };
    let field = |via: Via, p: &[Piece]| {
        text(if via != Via::Header && e.decoy {
            &DECOY
        } else {
            p
        })
    };

    let mut out = Vec::new();
    match e.extra {
        Extra::Stray { pax: true, size } => {
            out.push(meta(T::XHeader, "././@PaxHeader", Data::Filler(size)))
        }
        Extra::Stray { pax: false, size } => {
            out.push(meta(T::GNULongName, "././@LongLink", Data::Filler(size)))
        }
        Extra::Global => {
            let path = field(Via::Pax, &e.name);
            out.push(meta(
                T::XGlobalHeader,
                "pax_global_header",
                Data::Pax(vec![("path", path)]),
            ));
        }
        Extra::None | Extra::Record(_) => {}
    }
    if let Via::Gnu { nul } = e.name_via {
        out.push(meta(T::GNULongName, "././@LongLink", long(&e.name, nul)));
    }
    if let Via::Gnu { nul } = link_via {
        out.push(meta(T::GNULongLink, "././@LongLink", long(&e.link, nul)));
    }
    let mut records = Vec::new();
    if e.name_via == Via::Pax {
        records.push(("path", text(&e.name)));
    }
    if link_via == Via::Pax {
        records.push(("linkpath", text(&e.link)));
    }
    if let Extra::Record(r) = e.extra {
        records.push(match r {
            Record::Mtime => ("mtime", "1700000000.25".to_owned()),
            Record::Size => ("size", e.content.len().to_string()),
            Record::Sparse { map: false } => ("GNU.sparse.major", "1".to_owned()),
            Record::Sparse { map: true } => ("GNU.sparse.map", "0,0".to_owned()),
            Record::Empty { link: false } => ("path", String::new()),
            Record::Empty { link: true } => ("linkpath", String::new()),
        });
    }
    if !records.is_empty() {
        out.push(meta(T::XHeader, "././@PaxHeader", Data::Pax(records)));
    }
    let typ = match e.kind {
        Kind::File => T::Regular,
        Kind::Dir => T::Directory,
        Kind::Symlink => T::Symlink,
        Kind::Hardlink => T::Link,
        Kind::CharDevice => T::Char,
    };
    out.push(Member {
        typ,
        format,
        name: field(e.name_via, &e.name),
        link: if is_link {
            field(link_via, &e.link)
        } else {
            String::new()
        },
        data: Data::Bytes(e.content.clone()),
    });
    out
}

/// The member list as a reader can follow it ([`show`]; `$S`, `$O` left as such): entries
/// apart by `, `, the members of one entry joined by ` + `. Header fields are shown whole;
/// the archive holds their first 100 bytes.
fn describe(entries: &[Entry]) -> String {
    use tar::EntryType as T;
    let mut out = String::from("[");
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        for (j, m) in members(e, &show).into_iter().enumerate() {
            if j > 0 {
                out.push_str(" + ");
            }
            let (name, link) = (&m.name, &m.link);
            let _ = match (m.typ, &m.data) {
                (T::Regular, Data::Bytes(c)) => write!(out, "File({name:?}, {c:?})"),
                (T::Directory, _) => write!(out, "Dir({name:?})"),
                (T::Symlink, _) => write!(out, "Symlink({name:?} -> {link:?})"),
                (T::Link, _) => write!(out, "Hardlink({name:?} -> {link:?})"),
                (T::Char, _) => write!(out, "CharDevice({name:?})"),
                (T::GNULongName, Data::Filler(n)) => write!(out, "GnuLongName('a' ×{n})"),
                (T::XHeader, Data::Filler(n)) => write!(out, "Pax(one comment record, {n} bytes)"),
                (t, Data::Bytes(d)) => {
                    let what = if t == T::GNULongLink {
                        "GnuLongLink"
                    } else {
                        "GnuLongName"
                    };
                    write!(out, "{what}({:?})", String::from_utf8_lossy(d))
                }
                (t, Data::Pax(records)) => {
                    out.push_str(if t == T::XGlobalHeader {
                        "PaxGlobal{"
                    } else {
                        "Pax{"
                    });
                    for (j, (k, v)) in records.iter().enumerate() {
                        let _ = write!(out, "{}{k}={v:?}", if j > 0 { ", " } else { "" });
                    }
                    write!(out, "}}")
                }
                (t, _) => write!(out, "{t:?}({name:?})"),
            };
        }
    }
    out.push(']');
    out
}

/// Copies `text` into a header field, cut to fit (an old-style header has 100 bytes).
fn put(field: &mut [u8], text: &str) {
    let n = text.len().min(field.len());
    field[..n].copy_from_slice(&text.as_bytes()[..n]);
}

/// A PAX record: `LEN key=value\n`, where LEN counts the whole record, its own digits
/// included.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // ' ', '=' and '\n'
    let mut len = body;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    debug_assert_eq!(r.len(), len);
    r
}

/// Writes `m` with its raw name, bypassing the tar crate's own path checks.
fn append(b: &mut tar::Builder<Vec<u8>>, m: &Member) {
    let mut h = match m.format {
        Format::V7 => tar::Header::new_old(),
        Format::Ustar => tar::Header::new_ustar(),
        Format::Gnu => tar::Header::new_gnu(),
    };
    let raw = h.as_old_mut();
    put(&mut raw.name, &m.name);
    put(&mut raw.linkname, &m.link);
    h.set_entry_type(m.typ);
    h.set_mode(match m.typ {
        tar::EntryType::Directory => 0o755,
        tar::EntryType::Symlink => 0o777,
        tar::EntryType::Char => 0o666,
        _ => 0o644,
    });
    let res = match &m.data {
        Data::Bytes(d) => {
            h.set_size(d.len() as u64);
            h.set_cksum();
            b.append(&h, d.as_slice())
        }
        Data::Pax(records) => {
            let d: Vec<u8> = records
                .iter()
                .flat_map(|(k, v)| pax_record(k, v.as_bytes()))
                .collect();
            h.set_size(d.len() as u64);
            h.set_cksum();
            b.append(&h, d.as_slice())
        }
        &Data::Filler(n) => {
            h.set_size(n);
            h.set_cksum();
            if m.typ == tar::EntryType::XHeader {
                // One record of exactly n bytes: "n comment=aaa…a\n".
                let head = format!("{n} comment=");
                let fill = n - head.len() as u64 - 1;
                let data = head
                    .as_bytes()
                    .chain(std::io::repeat(b'a').take(fill))
                    .chain(&b"\n"[..]);
                b.append(&h, data)
            } else {
                b.append(&h, std::io::repeat(b'a').take(n))
            }
        }
    };
    res.unwrap();
}

/// An input whose [`cost`] is above this is run and checked like any other, but not kept
/// in the corpus: the fuzzer would otherwise spend most of its time on mutations of the
/// few deep ones it kept (2048 levels cost seconds a run, 240 a tenth of one, 60 about
/// ten milliseconds, against one or less for most inputs). Deep and long paths still
/// come from mutating cheaper inputs: a repeat's count is one byte. (Over 5 minutes, this
/// bound kept 87% of the old run rate with all the new coverage; 1 << 13 kept all the
/// rate but lost coverage, 1 << 16 halved the rate for none.)
const KEEP_COST: u64 = 1 << 14;

/// About what scanning and unpacking `entries` costs: for each name and link target as
/// the stager reads it (from a header, its first 100 bytes), its depth D × (its length
/// plus 3 D), as the checks hash the path of each of its folders and the unpack resolves
/// and makes each of them; and for a stray member, its size / 8, as its generated data
/// is copied a few times (so none of more than 128 KiB is kept). A path of 57 `a`s comes
/// to 16,188, one of 4 names of 255 bytes (1023 bytes) to 4,140, and one of 15 (3839
/// bytes) to 58,260.
fn cost(entries: &[Entry], s: &str, o: &str) -> u64 {
    let path = |p: &[Piece], via: Via| {
        let text = render(p, s, o);
        let text = match via {
            Via::Header => &text[..text.len().min(100)],
            _ => &text[..],
        };
        let depth = Path::new(text).components().count() as u64;
        depth * (text.len() as u64 + 3 * depth)
    };
    entries
        .iter()
        .map(|e| {
            let link = match e.kind {
                Kind::Symlink | Kind::Hardlink => path(&e.link, e.link_via),
                _ => 0,
            };
            let stray = match e.extra {
                Extra::Stray { size, .. } => size / 8,
                _ => 0,
            };
            path(&e.name, e.name_via) + link + stray
        })
        .sum()
}

/// A tar of `entries`, each written as its [`members`], and the end of the archive (two
/// blocks of zeros).
fn tar(entries: &[Entry], s: &str, o: &str) -> Vec<u8> {
    let text = |p: &[Piece]| render(p, s, o);
    let members: Vec<Member> = entries.iter().flat_map(|e| members(e, &text)).collect();
    // Sized at once: a stray member's megabytes are not copied again as the tar grows.
    let size: u64 = members
        .iter()
        .map(|m| {
            let n = match &m.data {
                Data::Bytes(d) => d.len() as u64,
                Data::Pax(records) => records
                    .iter()
                    .map(|(k, v)| k.len() + v.len() + 9)
                    .sum::<usize>() as u64,
                Data::Filler(n) => *n,
            };
            512 + n.next_multiple_of(512)
        })
        .sum();
    let mut b = tar::Builder::new(Vec::with_capacity(size as usize + 1024));
    for m in &members {
        append(&mut b, m);
    }
    b.into_inner().unwrap()
}

/// `parts`, one after the other, as a gzip member of stored (uncompressed) deflate
/// blocks: a real compressor would cost more than the rest of a run, and its branches
/// would only be noise to the fuzzer.
fn gzip_stored(parts: &[&[u8]]) -> Vec<u8> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut out = Vec::with_capacity(len + len / 0xffff * 5 + 64);
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
    let mut blocks = parts.iter().flat_map(|p| p.chunks(0xffff)).peekable();
    if blocks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    let mut crc = flate2::Crc::new();
    while let Some(block) = blocks.next() {
        let n = block.len() as u16;
        out.push(u8::from(blocks.peek().is_none()));
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(&(!n).to_le_bytes());
        out.extend_from_slice(block);
        crc.update(block);
    }
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out
}

/// `O/S` with `S/dest`, `S/dest2` and `S/secret`; `O` is removed when this is dropped.
struct Sandbox {
    outer: tempfile::TempDir,
    s: PathBuf,
    /// What `S/secret` is: (inode, mode, uid, gid).
    secret: (u64, u32, u32, u32),
}

impl Sandbox {
    fn new() -> Sandbox {
        // In memory where there is a tmpfs: removing a folder on a disk can take
        // milliseconds, which would be most of a run.
        let outer = tempfile::tempdir_in("/dev/shm")
            .or_else(|_| tempfile::tempdir())
            .unwrap();
        let s = outer.path().join("S");
        std::fs::create_dir(&s).unwrap();
        let secret = s.join("secret");
        std::fs::write(&secret, SECRET).unwrap();
        std::fs::set_permissions(
            &secret,
            std::os::unix::fs::PermissionsExt::from_mode(SECRET_MODE),
        )
        .unwrap();
        let m = std::fs::symlink_metadata(&secret).unwrap();
        let sb = Sandbox {
            outer,
            s,
            secret: (m.ino(), m.mode(), m.uid(), m.gid()),
        };
        sb.empty_dests();
        sb
    }

    fn dest(&self) -> PathBuf {
        self.s.join("dest")
    }

    fn dest2(&self) -> PathBuf {
        self.s.join("dest2")
    }

    /// Makes `S/dest` and `S/dest2` empty folders (std's `remove_dir_all` follows no
    /// symlink).
    fn empty_dests(&self) {
        for d in [self.dest(), self.dest2()] {
            if std::fs::symlink_metadata(&d).is_ok() {
                std::fs::remove_dir_all(&d).unwrap();
            }
            std::fs::create_dir(&d).unwrap();
        }
    }

    /// Nothing has landed outside `S/dest` and `S/dest2`.
    fn check_nothing_outside(&self, ctx: &str) {
        assert_eq!(
            names(self.outer.path()),
            ["S"],
            "something was written beside the sandbox; {ctx}"
        );
        assert_eq!(
            names(&self.s),
            ["dest", "dest2", "secret"],
            "something was written beside dest; {ctx}"
        );
        for d in [self.dest(), self.dest2()] {
            let m = std::fs::symlink_metadata(&d).unwrap();
            assert!(m.is_dir(), "{} is no longer a folder; {ctx}", d.display());
        }
        let secret = self.s.join("secret");
        let m = std::fs::symlink_metadata(&secret).unwrap();
        assert!(m.is_file(), "secret is no longer a file; {ctx}");
        assert_eq!(
            (m.ino(), m.mode(), m.uid(), m.gid()),
            self.secret,
            "secret was replaced, or its mode or owner changed; {ctx}"
        );
        assert_eq!(m.nlink(), 1, "secret was hard-linked; {ctx}");
        assert_eq!(
            std::fs::read(&secret).unwrap(),
            SECRET,
            "secret was overwritten; {ctx}"
        );
    }
}

/// The names in the folder `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A file's identity: (device, inode).
type Id = (u64, u64);

/// Walks the folder open as `dir` (`rel` below the root) without following a link: adds
/// every folder and file in it to `inside` and every symlink, with its folder, to `links`.
/// Descriptors only: an archive's paths may be longer than a path the kernel takes whole.
fn walk_tree(
    dir: Rc<OwnedFd>,
    rel: &Path,
    inside: &mut HashSet<Id>,
    links: &mut Vec<(Rc<OwnedFd>, OsString, PathBuf)>,
) {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut list = nix::dir::Dir::openat(&*dir, ".", flags, Mode::empty()).unwrap();
    let names: Vec<OsString> = list
        .iter()
        .map(|e| {
            use std::os::unix::ffi::OsStrExt;
            std::ffi::OsStr::from_bytes(e.unwrap().file_name().to_bytes()).to_owned()
        })
        .filter(|n| n != "." && n != "..")
        .collect();
    drop(list);
    for name in names {
        let st = fstatat(&*dir, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW).unwrap();
        let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
        if kind == SFlag::S_IFLNK {
            links.push((dir.clone(), name.clone(), rel.join(&name)));
            continue;
        }
        inside.insert((st.st_dev, st.st_ino));
        if kind == SFlag::S_IFDIR {
            let sub = openat(&*dir, name.as_os_str(), flags, Mode::empty()).unwrap();
            walk_tree(Rc::new(sub), &rel.join(&name), inside, links);
        }
    }
}

/// Every symlink in `dest` that resolves (not dangling, no loop) resolves inside `dest`
/// (or to `dest` itself). Each link is resolved by the kernel from its folder's
/// descriptor, so links at any depth are checked; it resolves inside when what it
/// resolves to is `dest` or a folder or file found in it (a file there has no second
/// name outside: `secret` is checked to have one, and an unpack links only its own files).
fn check_links_inside(dest: &Path, ctx: &str) {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let root = openat(nix::fcntl::AT_FDCWD, dest, flags, Mode::empty()).unwrap();
    let st = fstat(&root).unwrap();
    let mut inside = HashSet::from([(st.st_dev, st.st_ino)]);
    let mut links = Vec::new();
    walk_tree(Rc::new(root), Path::new(""), &mut inside, &mut links);
    for (dir, name, rel) in links {
        // O_PATH without O_NOFOLLOW: follows the link, opens nothing (not even a device).
        let Ok(to) = openat(
            &*dir,
            name.as_os_str(),
            OFlag::O_PATH | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) else {
            continue;
        };
        let st = fstat(&to).unwrap();
        if !inside.contains(&(st.st_dev, st.st_ino)) {
            let target = nix::fcntl::readlinkat(&*dir, name.as_os_str()).unwrap();
            let resolved = std::fs::read_link(format!("/proc/self/fd/{}", to.as_raw_fd()));
            panic!(
                "{} (-> {target:?}) resolves to {resolved:?}, outside {}; {ctx}",
                dest.join(&rel).display(),
                dest.display(),
            );
        }
    }
}

/// Whether `FUZZ_SHOW` is set: then each run prints its members and results.
fn verbose() -> bool {
    static SHOW: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SHOW.get_or_init(|| std::env::var_os("FUZZ_SHOW").is_some())
}

/// Scans `data` and unpacks it into the empty folder `dest`: both accept it or both refuse
/// it, and count the same.
fn scan_and_unpack(
    data: &[u8],
    dest: &Path,
    policy: ArchivePolicy,
    owner: (u32, u32),
    ctx: &str,
) -> Result<ArchiveStats, ArchiveError> {
    let scanned = archive::scan(data, policy);
    let unpacked = archive::unpack(data, dest, policy, Some(owner));
    if verbose() {
        eprintln!("  scan {scanned:?}\n  unpack {unpacked:?}");
    }
    match (&scanned, &unpacked) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "scan and unpack counted differently; {ctx}"),
        (Err(_), Err(_)) => {}
        _ => panic!("scan and unpack disagree: {scanned:?} vs {unpacked:?}; {ctx}"),
    }
    unpacked
}

fuzz_target!(|data: &[u8]| -> Corpus {
    let (cut, entries) = decode(data);
    let cut = usize::from(cut) % (entries.len() + 1);
    let sb = Sandbox::new();
    let s = sb.s.to_str().unwrap().to_owned();
    let o = sb.outer.path().to_str().unwrap().to_owned();
    let (first, second) = (tar(&entries[..cut], &s, &o), tar(&entries[cut..], &s, &o));
    // The whole list is the first part's members, then the second's (and its end).
    let whole = gzip_stored(&[&first[..first.len() - 1024], &second]);
    let (first, second) = (gzip_stored(&[&first]), gzip_stored(&[&second]));
    let shown = describe(&entries);
    let cost = cost(&entries, &s, &o);
    if verbose() {
        eprintln!("members {shown}, cut at {cut}, cost {cost}");
    }
    // As root, files go to another user (as the stager gives them to vcap), so a chown
    // that went astray shows on `secret`; otherwise to ourselves.
    let owner = match sb.secret {
        (_, _, 0, _) => (2000, 2000),
        (_, _, uid, gid) => (uid, gid),
    };

    for (name, policy) in [
        ("upload", ArchivePolicy::upload()),
        ("droplet", ArchivePolicy::droplet()),
    ] {
        let upload = !policy.symlinks_anywhere;
        sb.empty_dests();
        if verbose() {
            eprintln!("{name} policy, the whole list, then [..{cut}]:");
        }

        let ctx = format!("{name} policy, the whole list into dest; members {shown}");
        let res = scan_and_unpack(&whole, &sb.dest(), policy, owner, &ctx);
        sb.check_nothing_outside(&ctx);
        if upload && res.is_ok() {
            check_links_inside(&sb.dest(), &ctx);
        }

        let ctx =
            format!("{name} policy, entries [..{cut}] into dest2 (then the rest); members {shown}");
        let res = scan_and_unpack(&first, &sb.dest2(), policy, owner, &ctx);
        sb.check_nothing_outside(&ctx);
        if upload && res.is_ok() {
            check_links_inside(&sb.dest2(), &ctx);
        }

        // Unpacked over what the first part left, whether or not that part was refused.
        // The folder did not start empty, so this run is held to "nothing lands outside"
        // only: links that each part's checks accept on their own may together lead out
        // (`c -> .` from the first, `up -> c/..` from the second). `unpack` is made for
        // an empty folder, and the platform gives every archive a folder made for it.
        let ctx =
            format!("{name} policy, entries [{cut}..] over [..{cut}] in dest2; members {shown}");
        let res = archive::unpack(second.as_slice(), &sb.dest2(), policy, Some(owner));
        if verbose() {
            eprintln!("  [{cut}..] over it: unpack {res:?}");
        }
        sb.check_nothing_outside(&ctx);
    }
    if cost > KEEP_COST {
        Corpus::Reject
    } else {
        Corpus::Keep
    }
});
