//! `geogate diff`: where two compiled snapshots (a live one and a candidate) give a request a
//! different verdict, over the whole address space, exactly.
//!
//! Both tables are walked range by range in address order ([`GeoTable::segments_v4`]); each
//! stretch where neither changes its answer is one segment, decided once per distinct pair of
//! answers (the policy is pure, so equal answers give equal verdicts). Segments whose verdict
//! (action and deciding rule) differs are grouped by (old verdict, old country) -> (new
//! verdict, new country) and counted in IPv4 addresses and IPv6 /64s. No sampling.
//!
//! The IPv6 block `::ffff:0:0/96` is left out: a lookup canonicalises those addresses to IPv4,
//! so the IPv4 walk already counts them.
//!
//! Cost: O(ranges of both tables) lookups, plus one policy decision per distinct answer pair.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::Serialize;

use crate::geo::Answer;
use crate::policy::{Action, RequestFacts, Verdict};
use crate::snapshot::Snapshot;

/// The request the verdicts are computed for.
#[derive(Clone, Debug)]
pub struct DiffRequest {
    pub method: http::Method,
    pub path: String,
    /// `None`: a request without a host (rules that name hosts never match it).
    pub host: Option<String>,
}

/// What changes, largest first.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DiffReport {
    pub totals: Totals,
    pub changes: Vec<Change>,
}

/// The space whose verdict changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub ipv4_addresses: u64,
    /// Whole /64s (addresses / 2^64, rounded down).
    pub ipv6_64s: u64,
    /// Stretches (as long as both tables keep one answer each) that change.
    pub ranges: u64,
}

/// One (old, new) group.
#[derive(Clone, Debug, Serialize)]
pub struct Change {
    pub from: Side,
    pub to: Side,
    pub ipv4_addresses: u64,
    pub ipv6_64s: u64,
    /// A few CIDRs inside the changed space (the first of each of the group's first segments).
    pub examples: Vec<String>,
    #[serde(skip)]
    ipv6_addresses: u128,
}

/// A verdict and the country it was given for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Side {
    /// `allow`, `block` or `tag`.
    pub action: &'static str,
    /// The deciding rule's name; `None` = the default action.
    pub rule: Option<String>,
    pub country: Option<String>,
}

/// Compares `live` and `candidate` for `req`; at most `examples` CIDRs per group.
pub fn diff(live: &Snapshot, candidate: &Snapshot, req: &DiffRequest, examples: usize) -> DiffReport {
    let facts = RequestFacts { host: req.host.as_deref(), path: &req.path, method: &req.method };
    let mut groups: HashMap<(Side, Side), Change> = HashMap::new();
    let mut decided: HashMap<(u32, u32), Option<(Side, Side)>> = HashMap::new();
    let mut decide = |a: u32, b: u32| -> Option<(Side, Side)> {
        decided
            .entry((a, b))
            .or_insert_with(|| {
                let (old, new) = (live.table.answer(a), candidate.table.answer(b));
                let (vo, vn) = (live.policy.decide(&facts, Some(&old)), candidate.policy.decide(&facts, Some(&new)));
                let (so, sn) = (side(live, &vo, &old), side(candidate, &vn, &new));
                (so.action != sn.action || so.rule != sn.rule).then_some((so, sn))
            })
            .clone()
    };
    let mut totals = Totals::default();

    let v4 = coalesce(merge(live.table.segments_v4().map(widen), candidate.table.segments_v4().map(widen)));
    for (first, last, a, b) in v4 {
        if let Some(key) = decide(a, b) {
            let c = group(&mut groups, key);
            let n = (last - first + 1) as u64;
            c.ipv4_addresses += n;
            totals.ipv4_addresses += n;
            totals.ranges += 1;
            if c.examples.len() < examples {
                c.examples.push(IpNet::V4(first_cidr4(first as u32, last as u32)).to_string());
            }
        }
    }
    let mut v6_total: u128 = 0;
    for (first, last, a, b) in coalesce(merge(live.table.segments_v6(), candidate.table.segments_v6())) {
        for (first, last) in without_mapped(first, last) {
            if let Some(key) = decide(a, b) {
                let c = group(&mut groups, key);
                let n = last - first;
                // `n + 1` overflows only for the whole space, which cannot remain here.
                c.ipv6_addresses = c.ipv6_addresses.saturating_add(n.saturating_add(1));
                v6_total = v6_total.saturating_add(n.saturating_add(1));
                totals.ranges += 1;
                if c.examples.len() < examples {
                    c.examples.push(IpNet::V6(first_cidr6(first, last)).to_string());
                }
            }
        }
    }
    totals.ipv6_64s = u64::try_from(v6_total >> 64).unwrap_or(u64::MAX);
    let mut changes: Vec<Change> = groups
        .into_values()
        .map(|mut c| {
            c.ipv6_64s = u64::try_from(c.ipv6_addresses >> 64).unwrap_or(u64::MAX);
            c
        })
        .collect();
    changes.sort_by(|x, y| {
        (y.ipv4_addresses, y.ipv6_addresses)
            .cmp(&(x.ipv4_addresses, x.ipv6_addresses))
            .then_with(|| (&x.from, &x.to).cmp(&(&y.from, &y.to)))
    });
    DiffReport { totals, changes }
}

impl DiffReport {
    /// The report in words, one group per line, largest first.
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut o = String::new();
        let t = &self.totals;
        let _ = writeln!(
            o,
            "verdict changes: {} IPv4 addresses ({:.4}% of the IPv4 space), {} IPv6 /64s, {} ranges",
            t.ipv4_addresses,
            t.ipv4_addresses as f64 / 4_294_967_296.0 * 100.0,
            t.ipv6_64s,
            t.ranges
        );
        for c in &self.changes {
            let _ = writeln!(
                o,
                "{:>12} IPv4  {:>14} /64s  {} -> {}  e.g. {}",
                c.ipv4_addresses,
                c.ipv6_64s,
                c.from,
                c.to,
                c.examples.join(" ")
            );
        }
        o
    }
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.rule {
            Some(r) => write!(f, "{} by {r:?}", self.action)?,
            None => write!(f, "{} by default", self.action)?,
        }
        write!(f, " ({})", self.country.as_deref().unwrap_or("-"))
    }
}

fn side(s: &Snapshot, v: &Verdict, a: &Answer<'_>) -> Side {
    let action = match v.action {
        Action::Allow => "allow",
        Action::Block(_) => "block",
        Action::Tag(_) => "tag",
    };
    Side {
        action,
        rule: v.rule.and_then(|r| s.policy.rule_name(r)).map(str::to_owned),
        country: a.geo.country.map(|c| c.to_string()),
    }
}

fn group(groups: &mut HashMap<(Side, Side), Change>, key: (Side, Side)) -> &mut Change {
    groups.entry(key.clone()).or_insert_with(|| Change {
        from: key.0,
        to: key.1,
        ipv4_addresses: 0,
        ipv6_64s: 0,
        examples: Vec::new(),
        ipv6_addresses: 0,
    })
}

fn widen((f, l, a): (u32, u32, u32)) -> (u128, u128, u32) {
    (u128::from(f), u128::from(l), a)
}

/// Walks two partitions of the same space together: each output stretch lies inside one
/// segment of each, with both answers.
fn merge(
    a: impl Iterator<Item = (u128, u128, u32)>,
    b: impl Iterator<Item = (u128, u128, u32)>,
) -> impl Iterator<Item = (u128, u128, u32, u32)> {
    let mut a = a.peekable();
    let mut b = b.peekable();
    let mut pos = Some(0u128);
    std::iter::from_fn(move || {
        let start = pos?;
        while a.peek().is_some_and(|s| s.1 < start) {
            a.next();
        }
        while b.peek().is_some_and(|s| s.1 < start) {
            b.next();
        }
        let (&(_, la, xa), &(_, lb, xb)) = (a.peek()?, b.peek()?);
        let last = la.min(lb);
        pos = last.checked_add(1);
        Some((start, last, xa, xb))
    })
}

/// Joins neighbouring stretches with the same pair of answers (the tries store one range in
/// several pieces where their nodes split it), so a stretch is as long as both answers last.
fn coalesce(pieces: impl Iterator<Item = (u128, u128, u32, u32)>) -> impl Iterator<Item = (u128, u128, u32, u32)> {
    let mut pieces = pieces.peekable();
    std::iter::from_fn(move || {
        let (first, mut last, a, b) = pieces.next()?;
        while let Some(&(f, l, na, nb)) = pieces.peek() {
            if (na, nb) != (a, b) || last.checked_add(1) != Some(f) {
                break;
            }
            last = l;
            pieces.next();
        }
        Some((first, last, a, b))
    })
}

/// `first..=last` without `::ffff:0:0/96` (at most two pieces).
fn without_mapped(first: u128, last: u128) -> impl Iterator<Item = (u128, u128)> {
    const LO: u128 = 0xffff_0000_0000;
    const HI: u128 = 0xffff_ffff_ffff;
    let below = (first < LO).then(|| (first, last.min(LO - 1)));
    let above = (last > HI).then(|| (first.max(HI + 1), last));
    below.into_iter().chain(above)
}

/// The largest CIDR that starts at `first` and ends at or before `last`.
fn first_cidr4(first: u32, last: u32) -> Ipv4Net {
    let mut len = 32u8;
    while len > 0 {
        let size = 1u64 << (33 - u32::from(len));
        let next = u64::from(first) + size - 1;
        if u64::from(first) % size != 0 || next > u64::from(last) {
            break;
        }
        len -= 1;
    }
    Ipv4Net::new(Ipv4Addr::from(first), len).unwrap_or_else(|_| Ipv4Net::from(Ipv4Addr::from(first)))
}

fn first_cidr6(first: u128, last: u128) -> Ipv6Net {
    let mut len = 128u8;
    while len > 0 {
        let bits = 129 - u32::from(len);
        if bits >= 128 {
            // The whole space: only if the stretch is everything.
            if first == 0 && last == u128::MAX {
                len -= 1;
            }
            break;
        }
        let size = 1u128 << bits;
        if first % size != 0 || first + (size - 1) > last {
            break;
        }
        len -= 1;
    }
    Ipv6Net::new(Ipv6Addr::from(first), len).unwrap_or_else(|_| Ipv6Net::from(Ipv6Addr::from(first)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_walks_both_partitions() {
        let a = vec![(0u128, 9u128, 1u32), (10, 99, 2), (100, u128::MAX, 3)];
        let b = vec![(0u128, 49u128, 7u32), (50, u128::MAX, 8)];
        let got: Vec<_> = merge(a.into_iter(), b.into_iter()).collect();
        assert_eq!(got, vec![(0, 9, 1, 7), (10, 49, 2, 7), (50, 99, 2, 8), (100, u128::MAX, 3, 8)]);
    }

    #[test]
    fn coalesce_joins_only_equal_neighbours() {
        let pieces = vec![(0u128, 9u128, 1u32, 1u32), (10, 19, 1, 1), (20, 29, 1, 2), (31, 40, 1, 2)];
        let got: Vec<_> = coalesce(pieces.into_iter()).collect();
        assert_eq!(got, vec![(0, 19, 1, 1), (20, 29, 1, 2), (31, 40, 1, 2)]);
    }

    #[test]
    fn mapped_block_is_left_out() {
        let got: Vec<_> = without_mapped(0, u128::MAX).collect();
        assert_eq!(got, vec![(0, 0xffff_0000_0000 - 1), (0x1_0000_0000_0000, u128::MAX)]);
        assert_eq!(without_mapped(0xffff_0000_0001, 0xffff_0000_0002).count(), 0);
    }

    #[test]
    fn first_cidrs() {
        let ip = |s: &str| u32::from(s.parse::<Ipv4Addr>().unwrap_or(Ipv4Addr::UNSPECIFIED));
        assert_eq!(first_cidr4(ip("10.0.0.0"), ip("10.0.1.255")).to_string(), "10.0.0.0/23");
        assert_eq!(first_cidr4(ip("10.0.0.3"), ip("10.0.0.200")).to_string(), "10.0.0.3/32");
        assert_eq!(first_cidr4(0, u32::MAX).to_string(), "0.0.0.0/0");
        assert_eq!(first_cidr6(0, u128::MAX).to_string(), "::/0");
        assert_eq!(first_cidr6(1 << 64, (2 << 64) - 1).to_string(), "0:0:0:1::/64");
    }
}
