//! The specific terms of a question — numbers, codes, dates and times, weekdays, named places
//! and products, negation — that must agree before the answer cache gives one question's answer
//! to another. Embeddings place "Are you open on Friday?" next to "What are your opening
//! hours?"; the terms tell them apart.
//!
//! Written for English and Arabic (the reference's customers): Arabic-Indic digits are read as
//! digits, Arabic letters are folded (alef forms, taa marbuta, alef maqsura, diacritics) and
//! the clitics `و ف ب ل ك` and the article `ال` are taken off before a word is compared.
//! Named places and products are words written with capitals inside a sentence, words in
//! Latin script inside an Arabic sentence, and a list of Arabic place names; a name on one side
//! must appear (in any case) on the other.

use std::collections::BTreeSet;

/// The terms of one question.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Terms {
    /// Numbers, written with digits (any script) or as English number words: `30`, `8`.
    numbers: BTreeSet<String>,
    /// Letters and digits mixed, or joined by `-`/`_`: `x200`, `ord-1042`, `5g` (lower case).
    codes: BTreeSet<String>,
    /// Weekdays, 0 = Monday.
    weekdays: BTreeSet<u8>,
    /// Months (1–12) and relative days (`today`, `tomorrow`, …) as words.
    dates: BTreeSet<String>,
    /// Parts of the day, coarse: `am` (also "morning"), `pm` (also "evening", "night", 21:00),
    /// `noon`, `midnight`.
    times: BTreeSet<String>,
    /// Named places and products (lower case).
    names: BTreeSet<String>,
    /// Whether the question is negated.
    negated: bool,
    /// Every word of the question, lower case and folded (to look names up in).
    words: BTreeSet<String>,
    /// The ordinary words (no term) of three letters or more, folded (Arabic article off,
    /// English plural folded), for the swapped-word check.
    content: BTreeSet<String>,
}

impl Terms {
    /// Whether two questions ask about the same specific things: the same numbers, codes,
    /// weekdays, dates, times and negation, and each one's names present in the other.
    pub fn agree(&self, other: &Terms) -> bool {
        !self.swapped(other)
            && self.numbers == other.numbers
            && self.codes == other.codes
            && self.weekdays == other.weekdays
            && self.dates == other.dates
            && self.times == other.times
            && self.negated == other.negated
            && self.names.iter().all(|n| other.words.contains(n))
            && other.names.iter().all(|n| self.words.contains(n))
    }
}

impl Terms {
    /// An ordinary word (no term): kept for the swapped-word check when it has three letters
    /// or more (Arabic article off, English plural folded).
    fn content_word(&mut self, plain: &str) {
        // The accusative alif of Arabic adverbs (`يوما`, `نقدا`) is the same word.
        let plain = match plain.strip_suffix('ا') {
            Some(stem) if stem.chars().count() >= 3 => stem,
            _ => plain,
        };
        let folded = crate::pipeline::memory::tokens(plain).into_iter().next();
        // Latin words of three letters are mostly function words ("the", "are"); Arabic
        // content words are often three letters (`عيد`, `قرض`).
        let min = if plain.is_ascii() { 4 } else { 3 };
        if let Some(w) =
            folded.filter(|w| w.chars().count() >= min && !FUNCTION_WORDS.contains(&w.as_str()))
        {
            self.content.insert(w);
        }
    }

    /// Whether the two questions are mostly the same words with one phrase swapped for
    /// another ("home internet plan" / "mobile plan", "عيد الأضحى" / "عيد الفطر", "silver" /
    /// "gold"): what differs is then the very thing asked about. A paraphrase rewords more.
    fn swapped(&self, other: &Terms) -> bool {
        let shared = self.content.intersection(&other.content).count();
        let only_self = self.content.difference(&other.content).count();
        let only_other = other.content.difference(&self.content).count();
        shared >= 2
            && (1..=2).contains(&only_self)
            && (1..=2).contains(&only_other)
            && shared >= only_self.max(only_other)
    }
}

const NUMBER_WORDS: &[(&str, u32)] = &[
    ("zero", 0),
    // `one` and `once` are left out: far more often an article ("in one day") than a count.
    ("two", 2),
    ("three", 3),
    ("four", 4),
    ("five", 5),
    ("six", 6),
    ("seven", 7),
    ("eight", 8),
    ("nine", 9),
    ("ten", 10),
    ("eleven", 11),
    ("twelve", 12),
    ("thirteen", 13),
    ("fourteen", 14),
    ("fifteen", 15),
    ("sixteen", 16),
    ("seventeen", 17),
    ("eighteen", 18),
    ("nineteen", 19),
    ("twenty", 20),
    ("thirty", 30),
    ("forty", 40),
    ("fifty", 50),
    ("sixty", 60),
    ("seventy", 70),
    ("eighty", 80),
    ("ninety", 90),
    ("hundred", 100),
    ("thousand", 1000),
    ("twice", 2),
    // Arabic (folded: ة → ه, أ/إ/آ → ا).
    ("واحد", 1),
    ("اثنان", 2),
    ("ثلاث", 3),
    ("ثلاثه", 3),
    ("اربع", 4),
    ("اربعه", 4),
    ("خمس", 5),
    ("خمسه", 5),
    ("سته", 6),
    ("سبع", 7),
    ("سبعه", 7),
    ("ثماني", 8),
    ("ثمانيه", 8),
    ("تسع", 9),
    ("تسعه", 9),
    ("عشر", 10),
    ("عشره", 10),
    ("عشرين", 20),
    ("ثلاثين", 30),
    ("اربعين", 40),
    ("خمسين", 50),
    ("ستين", 60),
    ("سبعين", 70),
    ("ثمانين", 80),
    ("تسعين", 90),
    ("مئه", 100),
    ("مائه", 100),
    ("الف", 1000),
    // Hours are told with ordinals: `العاشرة ليلا` is 10 pm (`الحادية عشرة`: 11).
    ("حاديه", 1),
    ("ثانيه", 2),
    ("ثالثه", 3),
    ("رابعه", 4),
    ("خامسه", 5),
    ("سادسه", 6),
    ("سابعه", 7),
    ("ثامنه", 8),
    ("تاسعه", 9),
    ("عاشره", 10),
];

const WEEKDAYS: &[(&str, u8)] = &[
    ("monday", 0),
    ("mon", 0),
    ("tuesday", 1),
    ("tue", 1),
    ("tues", 1),
    ("wednesday", 2),
    ("wed", 2),
    ("thursday", 3),
    ("thu", 3),
    ("thur", 3),
    ("thurs", 3),
    ("friday", 4),
    ("fri", 4),
    ("saturday", 5),
    ("sunday", 6),
    // Arabic, folded and without the article.
    ("اثنين", 0),
    ("ثلاثاء", 1),
    ("اربعاء", 2),
    ("خميس", 3),
    ("جمعه", 4),
    ("سبت", 5),
    // `أحد` alone is "anyone": Sunday only with the article.
    ("الاحد", 6),
];

/// Abbreviations that are also ordinary words: weekdays only when written with a capital.
const CAPITAL_WEEKDAYS: &[(&str, u8)] = &[("sat", 5), ("sun", 6)];

const MONTHS: &[(&str, u8)] = &[
    ("january", 1),
    ("jan", 1),
    ("february", 2),
    ("feb", 2),
    ("march", 3),
    ("april", 4),
    ("apr", 4),
    ("june", 6),
    ("jun", 6),
    ("july", 7),
    ("jul", 7),
    ("august", 8),
    ("aug", 8),
    ("september", 9),
    ("sep", 9),
    ("sept", 9),
    ("october", 10),
    ("oct", 10),
    ("november", 11),
    ("nov", 11),
    ("december", 12),
    ("dec", 12),
    ("يناير", 1),
    ("فبراير", 2),
    ("مارس", 3),
    ("ابريل", 4),
    ("مايو", 5),
    ("يونيو", 6),
    ("يوليو", 7),
    ("اغسطس", 8),
    ("سبتمبر", 9),
    ("اكتوبر", 10),
    ("نوفمبر", 11),
    ("ديسمبر", 12),
    ("رمضان", 13),
    ("شوال", 14),
];

/// `May` and `Mar` are months only with a capital, and not as a sentence's first word.
const CAPITAL_MONTHS: &[(&str, u8)] = &[("may", 5), ("mar", 3)];

const RELATIVE_DAYS: &[(&str, &str)] = &[
    ("today", "today"),
    ("tonight", "tonight"),
    ("tomorrow", "tomorrow"),
    ("yesterday", "yesterday"),
    ("weekend", "weekend"),
    ("weekends", "weekend"),
    ("holiday", "holiday"),
    ("holidays", "holiday"),
    ("eid", "eid"),
    ("christmas", "christmas"),
    ("اليوم", "today"),
    ("الليله", "tonight"),
    ("غدا", "tomorrow"),
    ("بكره", "tomorrow"),
    ("امس", "yesterday"),
    ("البارحه", "yesterday"),
    ("عطله", "holiday"),
    ("العطله", "holiday"),
    ("عيد", "eid"),
    ("العيد", "eid"),
];

const TIMES: &[(&str, &str)] = &[
    ("am", "am"),
    ("a.m", "am"),
    ("pm", "pm"),
    ("p.m", "pm"),
    ("morning", "am"),
    ("mornings", "am"),
    ("afternoon", "pm"),
    ("afternoons", "pm"),
    ("evening", "pm"),
    ("evenings", "pm"),
    ("night", "pm"),
    ("nights", "pm"),
    ("overnight", "pm"),
    ("noon", "noon"),
    ("midday", "noon"),
    ("midnight", "midnight"),
    ("صباحا", "am"),
    ("صباح", "am"),
    ("الصباح", "am"),
    ("الصبح", "am"),
    ("مساء", "pm"),
    ("مساءا", "pm"),
    ("المساء", "pm"),
    ("ظهرا", "noon"),
    ("الظهر", "noon"),
    ("ليلا", "pm"),
    ("الليل", "pm"),
    ("منتصف", "midnight"),
];

const NEGATIONS: &[&str] = &[
    // `no` and `without` are left out: "at no cost", "without a connection" reword, not negate.
    "not", "never", "cannot", "unable", "nothing", "none", "nobody", "neither", "nor", "isnt",
    "arent", "wasnt", "werent", "dont", "doesnt", "didnt", "cant", "couldnt", "wont", "wouldnt",
    "shouldnt", "havent", "hasnt", "hadnt", "aint", // Arabic
    "لا", "لم", "لن", "ليس", "ليست", "لست", "غير", "بدون", "مش", "مو",
];

/// Function words of four letters or more (English) and three or more (Arabic, folded), which
/// a rewording adds or drops freely: left out of the swapped-word check only.
const FUNCTION_WORDS: &[&str] = &[
    "there",
    "their",
    "theirs",
    "this",
    "that",
    "these",
    "those",
    "what",
    "when",
    "where",
    "which",
    "whom",
    "whose",
    "with",
    "from",
    "have",
    "does",
    "doe",
    "your",
    "yours",
    "about",
    "would",
    "could",
    "should",
    "will",
    "into",
    "than",
    "then",
    "them",
    "they",
    "also",
    "just",
    "some",
    "still",
    "please",
    "here",
    "very",
    "been",
    "being",
    "were",
    "shall",
    "must",
    "might",
    "each",
    "such",
    "only",
    "other",
    "ours",
    "mine",
    "it's",
    "it",
    "want",
    "need",
    "like",
    "know",
    "هذا",
    "هذه",
    "ذلك",
    "تلك",
    "التي",
    "الذي",
    "الذين",
    "ماذا",
    "كيف",
    "متي",
    "اين",
    "لماذا",
    "لديكم",
    "لدي",
    "لديك",
    "عند",
    "عندكم",
    "يمكن",
    "يمكنني",
    "ممكن",
    "هناك",
    "يوجد",
    "توجد",
    "كان",
    "كانت",
    "يكون",
    "تكون",
    "الي",
    "علي",
    "حتي",
    "ايضا",
];

/// Capitalised words that name nothing specific.
const COMMON_CAPITALISED: &[&str] = &["i", "im", "ive", "id", "ill", "ok", "okay", "hi", "hello"];

/// Arabic place names (folded, without the article) that the cache must tell apart.
const ARABIC_PLACES: &[&str] = &[
    "دبي",
    "ابوظبي",
    "ابو",
    "ظبي",
    "الشارقه",
    "شارقه",
    "عجمان",
    "رياض",
    "جده",
    "مكه",
    "دمام",
    "الطائف",
    "طائف",
    "ابها",
    "تبوك",
    "الدوحه",
    "دوحه",
    "قطر",
    "الكويت",
    "كويت",
    "البحرين",
    "بحرين",
    "المنامه",
    "منامه",
    "مسقط",
    "عمان",
    "صلاله",
    "القاهره",
    "قاهره",
    "الاسكندريه",
    "اسكندريه",
    "مصر",
    "الاردن",
    "اردن",
    "بيروت",
    "لبنان",
    "بغداد",
    "العراق",
    "عراق",
    "دمشق",
    "سوريا",
    "المغرب",
    "مغرب",
    "الرباط",
    "تونس",
    "الجزائر",
    "جزائر",
    "لندن",
    "باريس",
    "اسطنبول",
    "تركيا",
    "الهند",
    "هند",
    "امريكا",
    "بريطانيا",
    "السعوديه",
    "سعوديه",
    "الامارات",
    "امارات",
    "اوروبا",
    "الصين",
    "صين",
];

/// Arabic letters folded so spelling variants compare equal: alef forms, taa marbuta, alef
/// maqsura, hamza seats; diacritics and tatweel dropped. Other text is lower-cased.
pub fn fold(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    for c in word.chars() {
        match c {
            'أ' | 'إ' | 'آ' | 'ٱ' => out.push('ا'),
            'ة' => out.push('ه'),
            'ى' => out.push('ي'),
            'ؤ' => out.push('و'),
            'ئ' => out.push('ي'),
            '\u{064B}'..='\u{065F}' | '\u{0670}' | 'ـ' => {}
            '\'' | '’' | '‘' => {}
            c => out.extend(c.to_lowercase()),
        }
    }
    out
}

/// Arabic-Indic and extended Arabic-Indic digits as ASCII digits.
fn ascii_digits(word: &str) -> String {
    word.chars()
        .map(|c| match c {
            '\u{0660}'..='\u{0669}' => char::from(b'0' + (c as u32 - 0x0660) as u8),
            '\u{06F0}'..='\u{06F9}' => char::from(b'0' + (c as u32 - 0x06F0) as u8),
            c => c,
        })
        .collect()
}

fn is_arabic(c: char) -> bool {
    matches!(c, '\u{0600}'..='\u{06FF}' | '\u{0750}'..='\u{077F}' | '\u{FB50}'..='\u{FDFF}' | '\u{FE70}'..='\u{FEFF}')
}

/// The forms of an Arabic word to look up: as written, without one leading clitic, without
/// the article (after the clitic).
fn arabic_stems(word: &str) -> Vec<String> {
    let mut out = vec![word.to_owned()];
    let mut rest = word;
    for clitic in ['و', 'ف', 'ب', 'ل', 'ك'] {
        if let Some(r) = rest.strip_prefix(clitic)
            && r.chars().count() >= 2
        {
            out.push(r.to_owned());
            rest = r;
            break;
        }
    }
    for base in [word, rest] {
        for article in ["ال", "ل"] {
            if let Some(r) = base.strip_prefix(article)
                && r.chars().count() >= 2
            {
                out.push(r.to_owned());
            }
        }
    }
    out
}

fn lookup<T: Copy>(table: &[(&str, T)], forms: &[String]) -> Option<T> {
    forms
        .iter()
        .find_map(|f| table.iter().find(|(w, _)| w == f).map(|(_, v)| *v))
}

/// The specific terms of a question.
pub fn terms(text: &str) -> Terms {
    let text = ascii_digits(text);
    let arabic_sentence = text.chars().filter(|c| is_arabic(*c)).count()
        > text.chars().filter(char::is_ascii_alphabetic).count();
    let mut t = Terms::default();
    let mut sentence_start = true;
    // The number word just read, to join `sixty` `five`.
    let mut previous_number: Option<u32> = None;
    let text = without_thousands_separators(&text);
    let pieces = text
        .split(|c: char| {
            c.is_whitespace() || matches!(c, ',' | ';' | '(' | ')' | '"' | '؟' | '،' | '/')
        })
        .flat_map(split_compound);
    for raw in pieces {
        let previous = previous_number.take();
        let ends_sentence = raw.ends_with(['.', '!', '?']);
        let word = raw.trim_matches(|c: char| !c.is_alphanumeric());
        if word.is_empty() {
            sentence_start |= ends_sentence;
            continue;
        }
        let first = sentence_start;
        sentence_start = ends_sentence;
        let folded = fold(word);
        let plain: String = folded.chars().filter(|c| c.is_alphanumeric()).collect();
        t.words.insert(plain.clone());
        let forms = if word.chars().any(is_arabic) {
            arabic_stems(&plain)
        } else {
            vec![plain.clone()]
        };
        for f in &forms[1..] {
            t.words.insert(f.clone());
        }

        // Numbers and codes, including `8am`, `5G`, `X200`, `ORD-1042`, `24/7` (split above).
        let has_digit = word.chars().any(|c| c.is_ascii_digit());
        let has_letter = word.chars().any(char::is_alphabetic);
        if has_digit {
            let lower = word.to_lowercase();
            let (digits, suffix) = split_number(&lower);
            match (digits, suffix) {
                (Some(n), Some(unit)) if matches!(unit, "am" | "pm") => {
                    t.numbers.insert(n);
                    t.times.insert(unit.to_owned());
                }
                // Ordinals and plain units belong to the number (`25th`, `30days`).
                (Some(n), Some("st" | "nd" | "rd" | "th" | "h" | "hrs" | "days" | "kg" | "km")) => {
                    t.numbers.insert(n);
                }
                // `21:00` is 9 pm.
                (Some(n), None) if lower.contains(':') => match n.parse::<u32>() {
                    Ok(h @ 13..=23) => {
                        t.numbers.insert((h - 12).to_string());
                        t.times.insert("pm".to_owned());
                    }
                    _ => {
                        t.numbers.insert(n);
                    }
                },
                (Some(n), None) => {
                    t.numbers.insert(n);
                }
                _ => {
                    t.codes.insert(lower.replace('_', "-"));
                }
            }
            continue;
        }
        if has_letter && (word.contains('-') || word.contains('_')) && word.len() >= 3 {
            // `e-mail`, `check-in`, `Wi-Fi` are words; a code has a part in capitals.
            let capitals = |p: &str| p.chars().count() >= 2 && p.chars().all(char::is_uppercase);
            if word.split(['-', '_']).any(capitals) {
                t.codes.insert(word.to_lowercase().replace('_', "-"));
                continue;
            }
        }
        if let Some(n) = lookup(NUMBER_WORDS, &forms) {
            // `sixty-five`, `sixty five` → 65; `الحادية عشرة` → 11.
            let n = match (previous, n) {
                (Some(tens @ 20..=90), unit @ 1..=9) if tens % 10 == 0 => {
                    t.numbers.remove(&tens.to_string());
                    tens + unit
                }
                (Some(unit @ 1..=2), 10) if forms.iter().any(|f| f == "عشره") => {
                    t.numbers.remove(&unit.to_string());
                    10 + unit
                }
                _ => n,
            };
            t.numbers.insert(n.to_string());
            previous_number = Some(n);
            continue;
        }
        let capital = word.chars().next().is_some_and(char::is_uppercase);
        if let Some(d) = lookup(WEEKDAYS, &forms)
            .or_else(|| capital.then(|| lookup(CAPITAL_WEEKDAYS, &forms)).flatten())
        {
            t.weekdays.insert(d);
            continue;
        }
        // Plural weekdays: `Saturdays`.
        if let Some(d) = plain
            .strip_suffix('s')
            .and_then(|s| WEEKDAYS.iter().find(|(w, _)| *w == s && s.len() > 4))
        {
            t.weekdays.insert(d.1);
            continue;
        }
        if let Some(m) = lookup(MONTHS, &forms).or_else(|| {
            (capital && !first)
                .then(|| lookup(CAPITAL_MONTHS, &forms))
                .flatten()
        }) {
            t.dates.insert(format!("month-{m}"));
            continue;
        }
        if let Some(d) = lookup(RELATIVE_DAYS, &forms) {
            t.dates.insert(d.to_owned());
            continue;
        }
        if let Some(p) = lookup(TIMES, &forms) {
            t.times.insert(p.to_owned());
            continue;
        }
        if forms.iter().any(|f| NEGATIONS.contains(&f.as_str()))
            || word.to_lowercase().starts_with("non-")
            || (!word.chars().any(is_arabic) && plain.ends_with("nt") && word.contains(['\'', '’']))
        {
            t.negated = true;
            continue;
        }
        if word.chars().any(is_arabic) {
            if forms.iter().any(|f| ARABIC_PLACES.contains(&f.as_str())) {
                let name = forms
                    .iter()
                    .rfind(|f| ARABIC_PLACES.contains(&f.as_str()))
                    .cloned()
                    .unwrap_or(plain);
                t.names.insert(name);
            } else {
                // The most stripped form: `لبطاقة` and `البطاقة` are one word.
                t.content_word(forms.last().unwrap_or(&plain));
            }
            continue;
        }
        // A name: capitals inside a sentence (`Dubai`, `iPhone`), or Latin script in Arabic.
        let inner_capital = word.chars().skip(1).any(char::is_uppercase);
        let named = (capital && !first) || inner_capital || (arabic_sentence && has_letter);
        if named && !COMMON_CAPITALISED.contains(&plain.as_str()) && plain.chars().count() >= 2 {
            t.names.insert(plain);
        } else {
            t.content_word(&plain);
        }
    }
    t
}

/// `50,000` → `50000`: a comma between digits groups thousands.
fn without_thousands_separators(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    for (i, c) in chars.iter().enumerate() {
        let between_digits = (*c == ',' || *c == '٬')
            && i > 0
            && chars[i - 1].is_ascii_digit()
            && chars.get(i + 1).is_some_and(char::is_ascii_digit);
        if !between_digits {
            out.push(*c);
        }
    }
    out
}

/// A hyphenated word with a word part of four letters or more is several words
/// (`5G-capable`, `tree-nut`); a code keeps its hyphen (`ORD-1042`, `SKU-AB`).
fn split_compound(raw: &str) -> Vec<&str> {
    let word = raw.trim_matches(|c: char| !c.is_alphanumeric());
    if word.contains('-')
        && word
            .split('-')
            .any(|p| p.chars().count() >= 4 && p.chars().all(char::is_alphabetic))
        && !word.to_lowercase().starts_with("non-")
    {
        raw.split('-').collect()
    } else {
        vec![raw]
    }
}

/// `"30"` → (`30`, none); `"8am"` → (`8`, `am`); `"25th"` → (`25`, `th`); `"x200"` → (none, …).
fn split_number(word: &str) -> (Option<String>, Option<&str>) {
    let digits_end = word
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_digit() || *c == '.' || *c == ':'))
        .map_or(word.len(), |(i, _)| i);
    if digits_end == 0 {
        return (None, Some(word));
    }
    let number = word[..digits_end].trim_end_matches(['.', ':']);
    // `8:00` and `8` are the same hour; `8:30` is not.
    let number = number.strip_suffix(":00").unwrap_or(number);
    let rest = &word[digits_end..];
    if rest.is_empty() {
        (Some(number.to_owned()), None)
    } else if rest.chars().all(char::is_alphabetic) {
        (Some(number.to_owned()), Some(rest))
    } else {
        (None, Some(rest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agree(a: &str, b: &str) -> bool {
        terms(a).agree(&terms(b))
    }

    #[test]
    fn number_words_join_into_one_number() {
        assert!(agree(
            "Is the flu vaccine free for people over 65?",
            "Is the flu vaccine free for people over sixty-five?"
        ));
        assert!(!agree(
            "Is the flu vaccine free for people over 65?",
            "Is the flu vaccine free for people over sixty?"
        ));
        assert!(agree(
            "هل يعمل مركز خدمة العملاء بعد الساعة 10 مساءً؟",
            "هل يعمل مركز خدمة العملاء بعد العاشرة مساءً؟"
        ));
        assert!(agree(
            "هل يمكنني حجز طاولة الساعة 11 مساءً؟",
            "هل يمكنني حجز طاولة عند الحادية عشرة مساءً؟"
        ));
        assert!(!agree(
            "هل يمكنني حجز طاولة الساعة 11 مساءً؟",
            "هل يمكنني حجز طاولة عند العاشرة مساءً؟"
        ));
    }

    #[test]
    fn numbers_must_match() {
        assert!(agree(
            "Can I return an item after 30 days?",
            "Returns after thirty days?"
        ));
        assert!(!agree(
            "Can I return an item after 30 days?",
            "Can I return an item after 60 days?"
        ));
        assert!(agree("هل يمكن الإرجاع بعد ٣٠ يوما؟", "الإرجاع بعد 30 يوم"));
        assert!(!agree(
            "What are your opening hours?",
            "Are you open 24 hours?"
        ));
    }

    #[test]
    fn codes_must_match() {
        assert!(!agree(
            "Does the X200 router support 5G?",
            "Does the X300 router support 5G?"
        ));
        assert!(agree(
            "Does the X200 router support 5G?",
            "Is 5G supported on the x200?"
        ));
        assert!(!agree("Status of ORD-1042?", "Status of ORD-1043?"));
    }

    #[test]
    fn dates_and_times_must_match() {
        assert!(!agree(
            "Are you open on 25 December?",
            "Are you open on 25 January?"
        ));
        assert!(!agree(
            "Do you deliver before 8 am?",
            "Do you deliver before 8 pm?"
        ));
        assert!(agree(
            "Do you deliver before 8 am?",
            "Is delivery possible before 8am?"
        ));
        assert!(!agree(
            "What are your opening hours?",
            "Are you open tomorrow?"
        ));
        assert!(!agree("هل تفتحون صباحا؟", "هل تفتحون مساء؟"));
    }

    #[test]
    fn weekdays_must_match() {
        assert!(!agree(
            "What are your business hours?",
            "Are you open on Friday?"
        ));
        assert!(agree(
            "Is the clinic open on Saturday?",
            "Do you see patients on Saturdays?"
        ));
        assert!(agree("Is the clinic open on Saturday?", "Open on Sat?"));
        assert!(!agree(
            "Is the clinic open on Saturday?",
            "Is the clinic open on Sunday?"
        ));
        assert!(!agree(
            "هل العيادة مفتوحة يوم السبت؟",
            "هل العيادة مفتوحة يوم الجمعة؟"
        ));
        assert!(agree("هل العيادة مفتوحة يوم السبت؟", "هل تعملون السبت؟"));
        assert!(agree(
            "I sat down and asked about fees",
            "What are the fees?"
        ));
    }

    #[test]
    fn places_and_products_must_match() {
        assert!(!agree("Do you ship to Dubai?", "Do you ship to Paris?"));
        assert!(agree("Do you ship to Dubai?", "can you deliver to dubai"));
        assert!(!agree(
            "Is the iPhone 15 in stock?",
            "Is the Galaxy 15 in stock?"
        ));
        assert!(!agree("هل توصلون إلى دبي؟", "هل توصلون إلى الرياض؟"));
        assert!(agree("هل توصلون إلى دبي؟", "التوصيل لدبي متاح؟"));
        assert!(agree("How do I reset my password?", "Password reset: how?"));
    }

    #[test]
    fn a_swapped_phrase_is_another_question() {
        assert!(!agree(
            "How can I upgrade my mobile plan?",
            "How can I upgrade my home internet plan?"
        ));
        assert!(!agree(
            "هل المتجر مفتوح في أول أيام عيد الفطر؟",
            "هل المتجر مفتوح في أول أيام عيد الأضحى؟"
        ));
        assert!(!agree(
            "How do I block a lost card?",
            "How do I block a lost cheque book?"
        ));
        // Rewording is not swapping.
        assert!(agree(
            "What are your store opening hours?",
            "When do your shops open?"
        ));
        assert!(agree(
            "How do I block a lost card?",
            "How do I block my card"
        ));
    }

    #[test]
    fn rewordings_keep_their_terms() {
        assert!(agree(
            "Can I transfer more than 50,000 AED in one day?",
            "Is it possible to send over AED 50000 in a single day?"
        ));
        assert!(agree(
            "Does the X200 router support 5G?",
            "Is the X200 5G-capable?"
        ));
        assert!(agree(
            "Is a doctor available after 9 pm?",
            "Can I see a physician after 9 in the evening?"
        ));
        assert!(agree(
            "Is a doctor available after 9 pm?",
            "Can I still see one past 21:00?"
        ));
        assert!(agree(
            "Do you deliver before 8 am?",
            "Can my parcel arrive before 8 in the morning?"
        ));
        assert!(agree(
            "Which items cannot be returned?",
            "Which products are non-returnable?"
        ));
        assert!(!agree(
            "Which items can be returned?",
            "Which products are non-returnable?"
        ));
        assert!(agree(
            "What are your store opening hours?",
            "What are the hours of your stores?"
        ));
    }

    #[test]
    fn negation_must_match() {
        assert!(!agree(
            "Why was my card charged?",
            "Why was my card not charged?"
        ));
        assert!(agree(
            "Why was my card not charged?",
            "Why wasn't my card charged?"
        ));
        assert!(!agree("لماذا تم خصم المبلغ؟", "لماذا لم يتم خصم المبلغ؟"));
        assert!(agree(
            "How do I change my password?",
            "كيف أغير كلمة المرور"
        ));
    }
}
