"""Every FLEURS language (102) with the codes each resource uses, and the named sets.

The study's 36 (Lee et al., Table 1) carry its resource levels (after the SeamlessM4T paper); the other 66 have
no level here ("unknown"): a job sets or overrides levels with `data.levels`. Sets: `paper` (the 30 of the
study's SeamlessM4T and SALMONN analyses), `paper-sonar` (its 30 for SONAR), `all` and `study` (the study's
36), `fleurs` (all 102).
"""

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
    level: str  # resource level after the SeamlessM4T paper: high, medium, low; "unknown" where none is given
    sets: tuple[str, ...]


_P, _S, _F = "paper", "paper-sonar", "fleurs"

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

STUDY = tuple(row[0] for row in _TABLE)

# The other FLEURS languages: iso, name, fleurs, flores, seamless, script, family (no resource level given here)
_MORE = [
    ("afr", "Afrikaans", "af_za", "afr_Latn", "afr", "Latn", "Indo-European"),
    ("ast", "Asturian", "ast_es", "ast_Latn", "ast", "Latn", "Indo-European"),
    ("azj", "North Azerbaijani", "az_az", "azj_Latn", "azj", "Latn", "Turkic"),
    ("bel", "Belarusian", "be_by", "bel_Cyrl", "bel", "Cyrl", "Indo-European"),
    ("ben", "Bengali", "bn_in", "ben_Beng", "ben", "Beng", "Indo-European"),
    ("bos", "Bosnian", "bs_ba", "bos_Latn", "bos", "Latn", "Indo-European"),
    ("ceb", "Cebuano", "ceb_ph", "ceb_Latn", "ceb", "Latn", "Austronesian"),
    ("ckb", "Central Kurdish", "ckb_iq", "ckb_Arab", "ckb", "Arab", "Indo-European"),
    ("ces", "Czech", "cs_cz", "ces_Latn", "ces", "Latn", "Indo-European"),
    ("cym", "Welsh", "cy_gb", "cym_Latn", "cym", "Latn", "Indo-European"),
    ("dan", "Danish", "da_dk", "dan_Latn", "dan", "Latn", "Indo-European"),
    ("spa", "Spanish", "es_419", "spa_Latn", "spa", "Latn", "Indo-European"),
    ("ful", "Fula", "ff_sn", "fuv_Latn", "fuv", "Latn", "Atlantic-Congo"),
    ("fil", "Filipino", "fil_ph", "tgl_Latn", "tgl", "Latn", "Austronesian"),
    ("gle", "Irish", "ga_ie", "gle_Latn", "gle", "Latn", "Indo-European"),
    ("glg", "Galician", "gl_es", "glg_Latn", "glg", "Latn", "Indo-European"),
    ("guj", "Gujarati", "gu_in", "guj_Gujr", "guj", "Gujr", "Indo-European"),
    ("hau", "Hausa", "ha_ng", "hau_Latn", "hau", "Latn", "Afro-Asiatic"),
    ("hrv", "Croatian", "hr_hr", "hrv_Latn", "hrv", "Latn", "Indo-European"),
    ("hun", "Hungarian", "hu_hu", "hun_Latn", "hun", "Latn", "Uralic"),
    ("ibo", "Igbo", "ig_ng", "ibo_Latn", "ibo", "Latn", "Atlantic-Congo"),
    ("isl", "Icelandic", "is_is", "isl_Latn", "isl", "Latn", "Indo-European"),
    ("jav", "Javanese", "jv_id", "jav_Latn", "jav", "Latn", "Austronesian"),
    ("kam", "Kamba", "kam_ke", "kam_Latn", "kam", "Latn", "Atlantic-Congo"),
    ("kea", "Kabuverdianu", "kea_cv", "kea_Latn", "kea", "Latn", "Portuguese Creole"),
    ("kaz", "Kazakh", "kk_kz", "kaz_Cyrl", "kaz", "Cyrl", "Turkic"),
    ("kan", "Kannada", "kn_in", "kan_Knda", "kan", "Knda", "Dravidian"),
    ("kir", "Kyrgyz", "ky_kg", "kir_Cyrl", "kir", "Cyrl", "Turkic"),
    ("ltz", "Luxembourgish", "lb_lu", "ltz_Latn", "ltz", "Latn", "Indo-European"),
    ("lug", "Ganda", "lg_ug", "lug_Latn", "lug", "Latn", "Atlantic-Congo"),
    ("lin", "Lingala", "ln_cd", "lin_Latn", "lin", "Latn", "Atlantic-Congo"),
    ("luo", "Luo", "luo_ke", "luo_Latn", "luo", "Latn", "Nilotic"),
    ("lvs", "Latvian", "lv_lv", "lvs_Latn", "lvs", "Latn", "Indo-European"),
    ("mri", "Maori", "mi_nz", "mri_Latn", "mri", "Latn", "Austronesian"),
    ("mkd", "Macedonian", "mk_mk", "mkd_Cyrl", "mkd", "Cyrl", "Indo-European"),
    ("khk", "Mongolian", "mn_mn", "khk_Cyrl", "khk", "Cyrl", "Mongolic"),
    ("zsm", "Malay", "ms_my", "zsm_Latn", "zsm", "Latn", "Austronesian"),
    ("mlt", "Maltese", "mt_mt", "mlt_Latn", "mlt", "Latn", "Afro-Asiatic"),
    ("mya", "Burmese", "my_mm", "mya_Mymr", "mya", "Mymr", "Sino-Tibetan"),
    ("nob", "Norwegian Bokmål", "nb_no", "nob_Latn", "nob", "Latn", "Indo-European"),
    ("npi", "Nepali", "ne_np", "npi_Deva", "npi", "Deva", "Indo-European"),
    ("nso", "Northern Sotho", "nso_za", "nso_Latn", "nso", "Latn", "Atlantic-Congo"),
    ("nya", "Nyanja", "ny_mw", "nya_Latn", "nya", "Latn", "Atlantic-Congo"),
    ("oci", "Occitan", "oc_fr", "oci_Latn", "oci", "Latn", "Indo-European"),
    ("gaz", "Oromo", "om_et", "gaz_Latn", "gaz", "Latn", "Afro-Asiatic"),
    ("ory", "Odia", "or_in", "ory_Orya", "ory", "Orya", "Indo-European"),
    ("pan", "Punjabi", "pa_in", "pan_Guru", "pan", "Guru", "Indo-European"),
    ("pol", "Polish", "pl_pl", "pol_Latn", "pol", "Latn", "Indo-European"),
    ("pbt", "Pashto", "ps_af", "pbt_Arab", "pbt", "Arab", "Indo-European"),
    ("por", "Portuguese", "pt_br", "por_Latn", "por", "Latn", "Indo-European"),
    ("ron", "Romanian", "ro_ro", "ron_Latn", "ron", "Latn", "Indo-European"),
    ("slk", "Slovak", "sk_sk", "slk_Latn", "slk", "Latn", "Indo-European"),
    ("slv", "Slovenian", "sl_si", "slv_Latn", "slv", "Latn", "Indo-European"),
    ("som", "Somali", "so_so", "som_Latn", "som", "Latn", "Afro-Asiatic"),
    ("srp", "Serbian", "sr_rs", "srp_Cyrl", "srp", "Cyrl", "Indo-European"),
    ("swe", "Swedish", "sv_se", "swe_Latn", "swe", "Latn", "Indo-European"),
    ("tgk", "Tajik", "tg_tj", "tgk_Cyrl", "tgk", "Cyrl", "Indo-European"),
    ("ukr", "Ukrainian", "uk_ua", "ukr_Cyrl", "ukr", "Cyrl", "Indo-European"),
    ("umb", "Umbundu", "umb_ao", "umb_Latn", "umb", "Latn", "Atlantic-Congo"),
    ("urd", "Urdu", "ur_pk", "urd_Arab", "urd", "Arab", "Indo-European"),
    ("uzn", "Uzbek", "uz_uz", "uzn_Latn", "uzn", "Latn", "Turkic"),
    ("vie", "Vietnamese", "vi_vn", "vie_Latn", "vie", "Latn", "Austroasiatic"),
    ("wol", "Wolof", "wo_sn", "wol_Latn", "wol", "Latn", "Atlantic-Congo"),
    ("xho", "Xhosa", "xh_za", "xho_Latn", "xho", "Latn", "Atlantic-Congo"),
    ("yor", "Yoruba", "yo_ng", "yor_Latn", "yor", "Latn", "Atlantic-Congo"),
    ("zul", "Zulu", "zu_za", "zul_Latn", "zul", "Latn", "Atlantic-Congo"),
]

LANGUAGES: dict[str, Language] = {row[0]: Language(*row[:8], row[8] + (_F,)) for row in _TABLE}
LANGUAGES.update({row[0]: Language(*row, "unknown", (_F,)) for row in _MORE})
SETS: dict[str, tuple[str, ...]] = {
    "all": STUDY,
    "study": STUDY,
    _P: tuple(iso for iso, lang in LANGUAGES.items() if _P in lang.sets),
    _S: tuple(iso for iso, lang in LANGUAGES.items() if _S in lang.sets),
    _F: tuple(sorted(LANGUAGES, key=lambda iso: LANGUAGES[iso].fleurs)),
}
LEVELS = ("high", "medium", "low")
UNKNOWN = "unknown"


def level(iso: str, overrides: dict | None = None) -> str:
    """A language's resource level: the job's `data.levels` entry, else the table's (or "unknown")."""
    return (overrides or {}).get(iso) or get(iso).level


def get(iso: str) -> Language:
    """The language with ISO 639-3 code `iso`; a clear error for an unknown code."""
    try:
        return LANGUAGES[iso]
    except KeyError:
        raise ConfigError(
            f"unknown language {iso!r}: crossrep knows the {len(LANGUAGES)} FLEURS languages by ISO 639-3 code "
            f"(the study's 36: {', '.join(STUDY)}; all: the set `fleurs`) and the sets {', '.join(SETS)}"
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
                try:
                    code = resolve(code)
                except ConfigError:
                    raise ConfigError(f"{key}: unknown language {code!r}: give ISO 639-3 codes (or ISO 639-1, "
                                      f"BCP-47, FLEURS config, FLoRes-200) of the {len(LANGUAGES)} FLEURS "
                                      f"languages (`crossrep languages` lists them) or sets: "
                                      f"{', '.join(SETS)}") from None
            if item not in SETS and source.get(code) == "list":
                raise ConfigError(f"{key}: {code!r} is listed twice; list each language once")
            if item not in SETS:
                source[code] = "list"
            if code not in out:
                out.append(code)
    if not out:
        raise ConfigError(f"{key}: no languages given")
    return tuple(out)
