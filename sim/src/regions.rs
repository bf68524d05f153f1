//! Where simulated nodes live, and the round-trip times between those places.
//!
//! # Source of the figures
//!
//! The matrix is IBM Cloud's published inter-region latency table for VPC
//! ("Network latency dashboard", IBM Cloud docs, `vpc` repository file
//! `_include-segments/network-latency.md`, table for 17 Aug 2024 – 15 Sep 2024):
//! the average round-trip time in milliseconds between virtual servers in ten
//! regions on four continents, measured by the provider over 30 days. Rows are
//! the measuring region, columns the target; the two directions differ by at
//! most a few milliseconds and [`rtt_ms`] uses their mean. The same page gives
//! 0.6–2.9 ms between availability zones of one region; nodes placed at the
//! same site use [`INTRA_SITE_RTT_MS`], the middle of that range.
//!
//! A node's *site* only decides its latency to others; its region name (what
//! the core reports) is unique per node, so a thousand-region federation maps
//! onto these ten sites the way many organisations share a cloud region.

/// One place nodes can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Site {
    /// The provider's region id, used in scenario files.
    pub name: &'static str,
    /// The city, for reports.
    pub city: &'static str,
}

/// Every site of the matrix, in matrix order.
pub const SITES: [Site; 10] = [
    Site {
        name: "us-south",
        city: "Dallas",
    },
    Site {
        name: "ca-tor",
        city: "Toronto",
    },
    Site {
        name: "us-east",
        city: "Washington DC",
    },
    Site {
        name: "eu-de",
        city: "Frankfurt",
    },
    Site {
        name: "eu-gb",
        city: "London",
    },
    Site {
        name: "eu-es",
        city: "Madrid",
    },
    Site {
        name: "jp-osa",
        city: "Osaka",
    },
    Site {
        name: "au-syd",
        city: "Sydney",
    },
    Site {
        name: "jp-tok",
        city: "Tokyo",
    },
    Site {
        name: "br-sao",
        city: "Sao Paulo",
    },
];

/// Round-trip time between two nodes at the same site, in milliseconds.
pub const INTRA_SITE_RTT_MS: f64 = 1.5;

/// Average RTT in ms, row = from, column = to, as published (0 on the diagonal).
const RTT_MS: [[f64; 10]; 10] = [
    [
        0.0, 34.0, 31.0, 123.0, 113.0, 117.0, 150.0, 185.0, 143.0, 145.0,
    ],
    [
        34.0, 0.0, 19.0, 92.0, 82.0, 109.0, 169.0, 215.0, 161.0, 130.0,
    ],
    [
        32.0, 20.0, 0.0, 91.0, 76.0, 88.0, 173.0, 214.0, 166.0, 118.0,
    ],
    [
        123.0, 93.0, 91.0, 0.0, 13.0, 29.0, 232.0, 250.0, 228.0, 197.0,
    ],
    [
        113.0, 83.0, 75.0, 13.0, 0.0, 27.0, 244.0, 261.0, 242.0, 187.0,
    ],
    [
        121.0, 109.0, 90.0, 29.0, 27.0, 0.0, 259.0, 275.0, 256.0, 207.0,
    ],
    [
        151.0, 168.0, 175.0, 232.0, 244.0, 258.0, 0.0, 122.0, 9.0, 292.0,
    ],
    [
        186.0, 214.0, 216.0, 250.0, 261.0, 275.0, 122.0, 0.0, 115.0, 327.0,
    ],
    [
        143.0, 162.0, 166.0, 231.0, 242.0, 257.0, 9.0, 115.0, 0.0, 284.0,
    ],
    [
        146.0, 130.0, 119.0, 198.0, 187.0, 205.0, 290.0, 328.0, 285.0, 0.0,
    ],
];

/// The index of the site called `name`.
pub fn site_index(name: &str) -> Option<usize> {
    SITES.iter().position(|s| s.name == name)
}

/// Every site name, for defaults and error messages.
pub fn site_names() -> Vec<String> {
    SITES.iter().map(|s| s.name.to_string()).collect()
}

/// Round-trip time between sites `a` and `b` (indices into [`SITES`]), in ms.
pub fn rtt_ms(a: usize, b: usize) -> f64 {
    if a == b {
        INTRA_SITE_RTT_MS
    } else {
        (RTT_MS[a][b] + RTT_MS[b][a]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtt_is_symmetric_and_positive() {
        for a in 0..SITES.len() {
            for b in 0..SITES.len() {
                assert_eq!(rtt_ms(a, b), rtt_ms(b, a));
                assert!(rtt_ms(a, b) >= INTRA_SITE_RTT_MS);
            }
        }
    }

    #[test]
    fn known_pairs_have_the_published_figures() {
        let at = |n| site_index(n).unwrap();
        assert_eq!(rtt_ms(at("eu-de"), at("eu-gb")), 13.0);
        assert_eq!(rtt_ms(at("jp-osa"), at("jp-tok")), 9.0);
        assert_eq!(rtt_ms(at("au-syd"), at("br-sao")), 327.5);
        assert_eq!(site_index("mars-1"), None);
    }
}
