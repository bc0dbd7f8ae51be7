"""The study's 36 languages (Lee et al., Table 1) with the codes each resource uses, and the named sets."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigError


@dataclass(frozen=True)
class Language:
    iso: str  # ISO 639-3, crossrep's key for a language everywhere
    name: str
    fleurs: str  # FLEURS config (folder name)
    flores: str  # FLoRes-200 code
    seamless: str  # SeamlessM4T language code
    script: str  # ISO 15924
    family: str
    level: str  # resource level after the SeamlessM4T paper: high, medium, low
    sets: tuple[str, ...]


_P, _S = "paper", "paper-sonar"

# iso, name, fleurs, flores, seamless, script, family, level, sets
_TABLE = [
    ("amh", "Amharic", "am_et", "amh_Ethi", "amh", "Ethi", "Afro-Asiatic", "low", (_P,)),
    ("arb", "Arabic", "ar_eg", "arb_Arab", "arb", "Arab", "Afro-Asiatic", "high", (_P, _S)),
    ("asm", "Assamese", "as_in", "asm_Beng", "asm", "Beng", "Indo-European", "low", (_S,)),
    ("bul", "Bulgarian", "bg_bg", "bul_Cyrl", "bul", "Cyrl", "Indo-European", "low", (_P, _S)),
    ("cat", "Catalan", "ca_es", "cat_Latn", "cat", "Latn", "Indo-European", "high", (_P, _S)),
    ("cmn", "Chinese Mandarin", "cmn_hans_cn", "zho_Hans", "cmn", "Hans", "Sino-Tibetan", "high", (_P, _S)),
    ("deu", "German", "de_de", "deu_Latn", "deu", "Latn", "Indo-European", "high", (_P, _S)),
    ("ell", "Greek", "el_gr", "ell_Grek", "ell", "Grek", "Indo-European", "medium", (_P,)),
    ("eng", "English", "en_us", "eng_Latn", "eng", "Latn", "Indo-European", "high", (_P, _S)),
    ("est", "Estonian", "et_ee", "est_Latn", "est", "Latn", "Uralic", "medium", (_P, _S)),
    ("fin", "Finnish", "fi_fi", "fin_Latn", "fin", "Latn", "Uralic", "high", (_P, _S)),
    ("fra", "French", "fr_fr", "fra_Latn", "fra", "Latn", "Indo-European", "high", (_P, _S)),
    ("heb", "Hebrew", "he_il", "heb_Hebr", "heb", "Hebr", "Afro-Asiatic", "low", (_S,)),
    ("hin", "Hindi", "hi_in", "hin_Deva", "hin", "Deva", "Indo-European", "medium", (_P, _S)),
    ("hye", "Armenian", "hy_am", "hye_Armn", "hye", "Armn", "Indo-European", "low", (_P,)),
    ("ind", "Indonesian", "id_id", "ind_Latn", "ind", "Latn", "Austronesian", "medium", (_P, _S)),
    ("ita", "Italian", "it_it", "ita_Latn", "ita", "Latn", "Indo-European", "high", (_P, _S)),
    ("jpn", "Japanese", "ja_jp", "jpn_Jpan", "jpn", "Jpan", "Japonic", "high", (_P, _S)),
    ("kat", "Georgian", "ka_ge", "kat_Geor", "kat", "Geor", "Kartvelian", "low", (_P,)),
    ("khm", "Khmer", "km_kh", "khm_Khmr", "khm", "Khmr", "Austroasiatic", "low", (_P,)),
    ("kor", "Korean", "ko_kr", "kor_Hang", "kor", "Hang", "Koreanic", "medium", (_P, _S)),
    ("lao", "Lao", "lo_la", "lao_Laoo", "lao", "Laoo", "Tai-Kadai", "low", (_S,)),
    ("lit", "Lithuanian", "lt_lt", "lit_Latn", "lit", "Latn", "Indo-European", "low", (_P, _S)),
    ("mal", "Malayalam", "ml_in", "mal_Mlym", "mal", "Mlym", "Dravidian", "low", (_S,)),
    ("mar", "Marathi", "mr_in", "mar_Deva", "mar", "Deva", "Indo-European", "low", (_P, _S)),
    ("nld", "Dutch", "nl_nl", "nld_Latn", "nld", "Latn", "Indo-European", "high", (_P, _S)),
    ("pes", "Persian", "fa_ir", "pes_Arab", "pes", "Arab", "Indo-European", "low", (_P, _S)),
    ("rus", "Russian", "ru_ru", "rus_Cyrl", "rus", "Cyrl", "Indo-European", "medium", (_P, _S)),
    ("sna", "Shona", "sn_zw", "sna_Latn", "sna", "Latn", "Atlantic-Congo", "low", (_P,)),
    ("snd", "Sindhi", "sd_in", "snd_Arab", "snd", "Arab", "Indo-European", "low", (_P, _S)),
    ("swh", "Swahili", "sw_ke", "swh_Latn", "swh", "Latn", "Atlantic-Congo", "low", (_S,)),
    ("tam", "Tamil", "ta_in", "tam_Taml", "tam", "Taml", "Dravidian", "medium", (_P, _S)),
    ("tel", "Telugu", "te_in", "tel_Telu", "tel", "Telu", "Dravidian", "medium", (_S,)),
    ("tha", "Thai", "th_th", "tha_Thai", "tha", "Thai", "Tai-Kadai", "medium", (_P, _S)),
    ("tur", "Turkish", "tr_tr", "tur_Latn", "tur", "Latn", "Turkic", "medium", (_P, _S)),
    ("yue", "Cantonese", "yue_hant_hk", "yue_Hant", "yue", "Hant", "Sino-Tibetan", "low", (_P, _S)),
]

LANGUAGES: dict[str, Language] = {row[0]: Language(*row) for row in _TABLE}
SETS: dict[str, tuple[str, ...]] = {
    "all": tuple(LANGUAGES),
    _P: tuple(iso for iso, lang in LANGUAGES.items() if _P in lang.sets),
    _S: tuple(iso for iso, lang in LANGUAGES.items() if _S in lang.sets),
}
LEVELS = ("high", "medium", "low")


def get(iso: str) -> Language:
    """The language with ISO 639-3 code `iso`; a clear error for an unknown code."""
    try:
        return LANGUAGES[iso]
    except KeyError:
        raise ConfigError(
            f"unknown language {iso!r}: crossrep knows the study's 36 languages "
            f"({', '.join(LANGUAGES)}) and the sets {', '.join(SETS)}"
        ) from None


def _aliases() -> dict[str, str]:
    out = {}
    for iso, lang in LANGUAGES.items():
        config = lang.fleurs.lower()
        for alias in (config, lang.flores.lower(), config.split("_")[0]):
            out.setdefault(alias, iso)
    out.update({"zh": "cmn", "zh_hans": "cmn", "zh_cn": "cmn", "zh_hant_hk": "yue", "zh_hk": "yue", "ar": "arb",
                "fa": "pes", "sw": "swh"})
    for iso in LANGUAGES:
        out[iso] = iso
    return out


ALIASES = _aliases()


def resolve(code: str) -> str:
    """The ISO 639-3 code of a language named the way corpora name it: ISO 639-3 (`eng`), a FLEURS config
    (`en_us`), a FLoRes-200 code (`eng_Latn`), ISO 639-1 (`en`) or a BCP-47 tag (`en-US`, `zh-Hans-CN`); an
    error naming the code otherwise."""
    key = code.strip().lower().replace("-", "_")
    parts = key.split("_")
    for candidate in (key, "_".join(parts[:2]), parts[0]):
        if candidate in ALIASES:
            return ALIASES[candidate]
    raise ConfigError(f"unknown language {code!r}: crossrep knows {len(LANGUAGES)} languages ({', '.join(LANGUAGES)}) "
                      f"by ISO 639-3, ISO 639-1, BCP-47, FLEURS config or FLoRes-200 code")


def expand(spec: str | list[str], key: str) -> tuple[str, ...]:
    """Turn a set name or a list of codes and set names into ordered, unique ISO codes (sets may overlap); a code
    listed twice by itself is an error, since it is most likely a typo for another.

    `key` is the YAML key the value came from, quoted in errors.
    """
    items = [spec] if isinstance(spec, str) else list(spec)
    out: list[str] = []
    source: dict[str, str] = {}
    for item in items:
        if not isinstance(item, str):
            raise ConfigError(f"{key}: expected language codes or set names, got {item!r}")
        codes = SETS.get(item, (item,))
        for code in codes:
            if code not in LANGUAGES:
                raise ConfigError(
                    f"{key}: unknown language {code!r}; known: {', '.join(LANGUAGES)}; sets: {', '.join(SETS)}"
                )
            if item not in SETS and source.get(code) == "list":
                raise ConfigError(f"{key}: {code!r} is listed twice; list each language once")
            if item not in SETS:
                source[code] = "list"
            if code not in out:
                out.append(code)
    if not out:
        raise ConfigError(f"{key}: no languages given")
    return tuple(out)
