//! Which addresses outbound requests may not reach unless an operator allows them: the
//! machine itself, its networks, and ranges that are not on the public Internet.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

/// Why an address is refused by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AddressKind {
    /// 127.0.0.0/8, ::1: this machine.
    Loopback,
    /// 0.0.0.0/8, ::: "this host" (connecting to 0.0.0.0 reaches this machine).
    Unspecified,
    /// 169.254.169.254 (and AWS's fd00:ec2::254): the cloud instance metadata service,
    /// which hands out credentials.
    CloudMetadata,
    /// 169.254.0.0/16, fe80::/10: the local link.
    LinkLocal,
    /// 10/8, 172.16/12, 192.168/16 (RFC 1918), fec0::/10 (deprecated site-local).
    Private,
    /// 100.64.0.0/10: carrier-grade NAT (RFC 6598), private to a provider's network.
    SharedAddressSpace,
    /// fc00::/7: IPv6 unique local addresses, the IPv6 private ranges.
    UniqueLocal,
    /// 224.0.0.0/4, ff00::/8.
    Multicast,
    /// 255.255.255.255.
    Broadcast,
    /// 192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32, 3fff::/20: examples only.
    Documentation,
    /// Ranges that are not routed on the Internet: 240/4, 192.0.0/24, 198.18/15
    /// (benchmarking), 192.88.99/24, 100::/64 (discard), 2001::/32 (Teredo),
    /// 2001:2::/48, 64:ff9b:1::/48.
    Reserved,
}

impl fmt::Display for AddressKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Loopback => "a loopback address",
            Self::Unspecified => "an unspecified address (it reaches this machine)",
            Self::CloudMetadata => "the cloud metadata service's link-local address",
            Self::LinkLocal => "a link-local address",
            Self::Private => "a private address",
            Self::SharedAddressSpace => "a carrier-grade NAT (shared, private) address",
            Self::UniqueLocal => "a unique local (private IPv6) address",
            Self::Multicast => "a multicast address",
            Self::Broadcast => "the broadcast address",
            Self::Documentation => "a documentation address",
            Self::Reserved => "a reserved address",
        })
    }
}

use AddressKind::*;

/// IPv4 ranges, most specific first (the first match names the kind).
const V4: [(Ipv4Net, AddressKind); 17] = [
    (v4(0, 0, 0, 0, 8), Unspecified),
    (v4(127, 0, 0, 0, 8), Loopback),
    (v4(169, 254, 169, 254, 32), CloudMetadata),
    (v4(169, 254, 0, 0, 16), LinkLocal),
    (v4(10, 0, 0, 0, 8), Private),
    (v4(172, 16, 0, 0, 12), Private),
    (v4(192, 168, 0, 0, 16), Private),
    (v4(100, 64, 0, 0, 10), SharedAddressSpace),
    (v4(192, 0, 0, 0, 24), Reserved),
    (v4(192, 0, 2, 0, 24), Documentation),
    (v4(198, 51, 100, 0, 24), Documentation),
    (v4(203, 0, 113, 0, 24), Documentation),
    (v4(198, 18, 0, 0, 15), Reserved),
    (v4(192, 88, 99, 0, 24), Reserved),
    (v4(224, 0, 0, 0, 4), Multicast),
    (v4(255, 255, 255, 255, 32), Broadcast),
    (v4(240, 0, 0, 0, 4), Reserved),
];

/// IPv6 ranges that carry no IPv4 address, most specific first.
const V6: [(Ipv6Net, AddressKind); 13] = [
    (v6([0, 0, 0, 0, 0, 0, 0, 0], 128), Unspecified),
    (v6([0, 0, 0, 0, 0, 0, 0, 1], 128), Loopback),
    (
        v6([0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254], 128),
        CloudMetadata,
    ),
    (v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10), LinkLocal),
    (v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10), Private),
    (v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7), UniqueLocal),
    (v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8), Multicast),
    (v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32), Documentation),
    (v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20), Documentation),
    (v6([0x0100, 0, 0, 0, 0, 0, 0, 0], 64), Reserved),
    (v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32), Reserved),
    (v6([0x2001, 2, 0, 0, 0, 0, 0, 0], 48), Reserved),
    (v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48), Reserved),
];

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8) -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len)
}

const fn v6(s: [u16; 8], len: u8) -> Ipv6Net {
    Ipv6Net::new_assert(
        Ipv6Addr::new(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]),
        len,
    )
}

/// Why `ip` is refused by default, or `None` for a public address.
///
/// IPv6 forms that carry an IPv4 address are judged by that address: IPv4-mapped
/// (`::ffff:127.0.0.1`), IPv4-compatible (`::127.0.0.1`), NAT64 (`64:ff9b::/96`) and
/// 6to4 (`2002::/16`), since each of them can end up at the IPv4 address.
pub fn classify(ip: IpAddr) -> Option<AddressKind> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(inner) => classify_v4(inner),
            None => V6
                .iter()
                .find(|(net, _)| net.contains(&v6))
                .map(|(_, kind)| *kind),
        },
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<AddressKind> {
    V4.iter()
        .find(|(net, _)| net.contains(&ip))
        .map(|(_, kind)| *kind)
}

/// The IPv4 address an IPv6 address stands for, if it is one of the forms that carry
/// one (`::` and `::1` are IPv6's own unspecified and loopback addresses).
pub(crate) fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        // IPv4-mapped ::ffff:a.b.c.d
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(low),
        // IPv4-compatible ::a.b.c.d (deprecated), not :: or ::1
        [0, 0, 0, 0, 0, 0, hi, lo] if hi != 0 || lo > 1 => Some(low),
        // NAT64 well-known prefix 64:ff9b::/96
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low),
        // 6to4 2002:aabb:ccdd::/48
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new(
            (hi >> 8) as u8,
            hi as u8,
            (lo >> 8) as u8,
            lo as u8,
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(text: &str) -> Option<AddressKind> {
        classify(text.parse().unwrap_or_else(|e| panic!("{text}: {e}")))
    }

    #[test]
    fn every_default_refused_ipv4_range_is_classified() {
        let cases = [
            ("127.0.0.1", Loopback),
            ("127.255.255.254", Loopback),
            ("0.0.0.0", Unspecified),
            ("0.1.2.3", Unspecified),
            ("169.254.169.254", CloudMetadata),
            ("169.254.1.1", LinkLocal),
            ("10.0.0.1", Private),
            ("10.255.255.255", Private),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("192.168.1.1", Private),
            ("100.64.0.1", SharedAddressSpace),
            ("100.127.255.255", SharedAddressSpace),
            ("192.0.0.8", Reserved),
            ("192.0.2.10", Documentation),
            ("198.51.100.1", Documentation),
            ("203.0.113.200", Documentation),
            ("198.18.0.1", Reserved),
            ("198.19.255.255", Reserved),
            ("192.88.99.1", Reserved),
            ("224.0.0.1", Multicast),
            ("239.255.255.250", Multicast),
            ("255.255.255.255", Broadcast),
            ("240.0.0.1", Reserved),
            ("255.255.255.254", Reserved),
        ];
        for (ip, expected) in cases {
            assert_eq!(kind(ip), Some(expected), "{ip}");
        }
    }

    #[test]
    fn public_ipv4_addresses_next_to_the_ranges_are_public() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "169.253.255.255",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "126.255.255.255",
            "128.0.0.0",
        ] {
            assert_eq!(kind(ip), None, "{ip}");
        }
    }

    #[test]
    fn ipv6_ranges_are_classified() {
        let cases = [
            ("::1", Loopback),
            ("::", Unspecified),
            ("fe80::1", LinkLocal),
            ("febf:ffff::1", LinkLocal),
            ("fec0::1", Private),
            ("fc00::1", UniqueLocal),
            ("fd12:3456::1", UniqueLocal),
            ("fd00:ec2::254", CloudMetadata),
            ("ff02::1", Multicast),
            ("2001:db8::1", Documentation),
            ("3fff::1", Documentation),
            ("100::1", Reserved),
            ("2001::1", Reserved),
            ("2001:2::1", Reserved),
            ("64:ff9b:1::1", Reserved),
        ];
        for (ip, expected) in cases {
            assert_eq!(kind(ip), Some(expected), "{ip}");
        }
        for ip in [
            "2606:4700:4700::1111",
            "2a00:1450:4001::1",
            "2001:4860::8888",
        ] {
            assert_eq!(kind(ip), None, "{ip}");
        }
    }

    #[test]
    fn ipv6_forms_of_ipv4_addresses_are_judged_by_the_ipv4_address() {
        let cases = [
            ("::ffff:127.0.0.1", Some(Loopback)),
            ("::ffff:7f00:1", Some(Loopback)),
            ("::ffff:169.254.169.254", Some(CloudMetadata)),
            ("::ffff:10.1.2.3", Some(Private)),
            ("::ffff:0.0.0.0", Some(Unspecified)),
            ("::127.0.0.1", Some(Loopback)),
            ("::10.0.0.1", Some(Private)),
            ("64:ff9b::127.0.0.1", Some(Loopback)),
            ("64:ff9b::192.168.0.1", Some(Private)),
            ("2002:7f00:1::", Some(Loopback)),
            ("2002:a9fe:a9fe::1", Some(CloudMetadata)),
            ("::ffff:8.8.8.8", None),
            ("64:ff9b::8.8.8.8", None),
            ("2002:0808:0808::1", None),
        ];
        for (ip, expected) in cases {
            assert_eq!(kind(ip), expected, "{ip}");
        }
    }

    #[test]
    fn kinds_read_as_part_of_a_sentence() {
        assert_eq!(Loopback.to_string(), "a loopback address");
        assert!(CloudMetadata.to_string().contains("metadata"));
    }
}
