"""wsload --hist files (lines of "<us> <samples>") merged, and percentiles of
them as wsload takes its own: the smallest latency with p% of the samples at
or below it. bench/common.sh and bench/channel.sh import it (PYTHONPATH)."""


def merged(paths):
    """{latency in us: samples} over every file."""
    hist = {}
    for path in paths:
        with open(path) as f:
            for line in f:
                us, n = map(int, line.split())
                hist[us] = hist.get(us, 0) + n
    return hist


def pct(hist, p):
    """The p-th percentile of hist in ms; None when it is empty."""
    want, seen = max(1, int(p / 100 * sum(hist.values()) + 0.5)), 0
    for us in sorted(hist):
        seen += hist[us]
        if seen >= want:
            return us / 1000
    return None
