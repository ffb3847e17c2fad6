//! Choosing the final response of a forked request (RFC 3261 16.7 step 6).

/// Ranks a final response for selection; lower is better.
///
/// 6xx beats everything (a callee declined everywhere). Otherwise the lowest class wins; inside
/// 4xx the responses a caller can act on (401, 407, 415, 420, 484) are preferred, and a 408
/// that this node synthesised for a silent branch loses to any real answer.
fn rank(status: u16, synthesised: bool) -> (u8, u8, u16) {
    let class = (status / 100) as u8;
    let class_rank = match class {
        6 => 0,
        3 => 1,
        4 => 2,
        5 => 3,
        _ => 4,
    };
    let preference = match status {
        401 | 407 | 415 | 420 | 484 => 0,
        408 if synthesised => 2,
        _ => 1,
    };
    (class_rank, preference, status)
}

/// True when `candidate` should replace `current` as the best final response so far.
pub fn is_better_final(
    candidate: u16,
    candidate_synthesised: bool,
    current: u16,
    current_synthesised: bool,
) -> bool {
    rank(candidate, candidate_synthesised) < rank(current, current_synthesised)
}

/// A proxy must not forward 503 upstream: the upstream element would think the proxy itself is
/// overloaded (RFC 3261 16.7 step 6).
pub fn status_to_forward(status: u16) -> u16 {
    if status == 503 {
        500
    } else {
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn six_hundreds_win() {
        assert!(is_better_final(603, false, 302, false));
        assert!(is_better_final(603, false, 486, false));
    }

    #[test]
    fn lowest_class_wins_otherwise() {
        assert!(is_better_final(302, false, 404, false));
        assert!(is_better_final(404, false, 500, false));
        assert!(!is_better_final(500, false, 486, false));
    }

    #[test]
    fn actionable_4xx_and_real_answers_preferred() {
        assert!(is_better_final(407, false, 404, false));
        assert!(is_better_final(480, false, 408, true));
        assert!(!is_better_final(408, true, 486, false));
    }

    #[test]
    fn service_unavailable_is_not_forwarded() {
        assert_eq!(status_to_forward(503), 500);
        assert_eq!(status_to_forward(486), 486);
    }
}
