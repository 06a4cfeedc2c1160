//! Parsing and validating lead definitions: every error carries its path.

use leadflow_domain::Policy;
use leadflow_domain::policy::{SlaKind, WorkflowOn};
use leadflow_domain::{Span, Stage};

use crate::common::{example_toml, policy};

/// The messages for a document, as `path: message` lines.
fn errors(toml: &str) -> Vec<String> {
    match Policy::from_toml(toml) {
        Ok(_) => panic!("expected the policy to be refused:\n{toml}"),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

fn edited(replace: &str, with: &str) -> Vec<String> {
    let toml = example_toml();
    assert!(toml.contains(replace), "no {replace:?} in the example");
    errors(&toml.replacen(replace, with, 1))
}

fn assert_has(errors: &[String], expected: &str) {
    assert!(
        errors.iter().any(|e| e.contains(expected)),
        "expected an error containing {expected:?}, got:\n{}",
        errors.join("\n")
    );
}

#[test]
fn the_example_policy_parses_into_typed_rules() {
    let p = policy();
    assert_eq!(p.name, "acme-b2b");
    assert_eq!(p.half_life, Some(Span::from_days(30)));
    assert_eq!(p.engagement_types.len(), 14);
    // fit rules then attribute undesirables; engagement rules then event undesirables
    let attribute_ids: Vec<&str> = p.attribute_rules.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        attribute_ids,
        [
            "senior-title",
            "mid-market",
            "target-industry",
            "free-mail",
            "competitor"
        ]
    );
    let event_ids: Vec<&str> = p.event_rules.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        event_ids,
        [
            "webinar-registration",
            "webinar-attendance",
            "ebook",
            "any-page",
            "pricing-page",
            "trial",
            "paid-channel-click",
            "docs-read",
            "case-study-research",
            "analytics-pages",
            "analytics-webinar",
            "analytics-trial",
            "careers-page",
            "unsubscribed",
            "hard-bounce"
        ]
    );
    assert_eq!(p.mql.engagement_at_least, 60.0);
    assert_eq!(p.mql.fit_at_least, 20.0);
    assert_eq!(p.mql.requires_attributes, ["email", "company"]);
    assert_eq!(p.sql.sales_ready_actions, ["demo_requested", "contact_requested"]);
    assert_eq!(
        p.grades.iter().map(|g| g.letter.as_str()).collect::<Vec<_>>(),
        ["A", "B", "C", "D"]
    );
    assert_eq!(p.grade(45.0), "A");
    assert_eq!(p.grade(29.99), "C");
    assert_eq!(p.grade(-15.0), "F");
    assert_eq!(p.slas.len(), 2);
    assert_eq!(p.slas[0].id, "sql_first_contact");
    assert_eq!(p.slas[0].kind, SlaKind::Until("sales_contacted".to_owned()));
    assert_eq!(p.slas[1].kind, SlaKind::Idle);
    assert!(p.slas[1].recycles());
    assert_eq!(p.workflows[1].on, WorkflowOn::Entered(Stage::Mql));
    assert_eq!(p.workflows[1].after, Some(Span::from_days(3)));
    assert_eq!(p.workflows[3].on, WorkflowOn::EngagementBelow(None, 30.0));
}

#[test]
fn a_misspelt_engagement_type_is_reported_at_its_path_with_a_suggestion() {
    let errs = edited("type = \"webinar_attended\"", "type = \"webinar_atended\"");
    assert_eq!(
        errs,
        [
            "engagement[1].type: unknown engagement type \"webinar_atended\" (did you mean \"webinar_attended\"?)"
        ]
    );
}

#[test]
fn every_error_in_a_document_is_reported_at_once() {
    let errs = edited("half_life = \"30d\"", "half_life = \"30 days\"")
        .into_iter()
        .chain(edited("max_points = 30", "max_points = -5"))
        .collect::<Vec<_>>();
    assert_has(&errs, "decay.half_life: bad duration \"30 days\"");
    assert_has(&errs, "engagement[2].max_points: a cap must be positive, not -5");

    let toml = example_toml()
        .replacen("half_life = \"30d\"", "half_life = \"30x\"", 1)
        .replacen("id = \"ebook\"", "id = \"trial\"", 1)
        .replacen(
            "matches = \"(?i)\\\\b(vp|head",
            "matches = \"(?i)\\\\b(vp|head(",
            1,
        );
    let errs = errors(&toml);
    assert!(errs.len() >= 3, "{errs:?}");
    assert_has(&errs, "decay.half_life: bad duration \"30x\"");
    assert_has(
        &errs,
        "engagement[5].id: duplicate rule id \"trial\" (first used at engagement[2].id)",
    );
    assert_has(&errs, "fit[0].matches: bad regex");
}

#[test]
fn unknown_keys_are_errors_with_a_hint() {
    assert_has(
        &edited(
            "engagement_at_least = 60",
            "engagment_at_least = 60\nengagement_at_least = 60",
        ),
        "stages.MQL.engagment_at_least: unknown key (did you mean \"engagement_at_least\"?)",
    );
    assert_has(
        &edited("name = \"acme-b2b\"", "name = \"acme-b2b\"\ncolour = \"red\""),
        "colour: unknown key",
    );
    assert_has(
        &edited("[stages.SQL]", "[stages.LEAD]\nx = 1\n[stages.SQL]"),
        "stages.LEAD: unknown key",
    );
}

#[test]
fn bad_values_are_refused_class_by_class() {
    let cases: &[(&str, &str, &str)] = &[
        // durations
        (
            "within = \"24h\"",
            "within = \"0h\"",
            "sla.sql_first_contact.within: bad duration \"0h\": must be longer than zero",
        ),
        (
            "after = \"3d\"",
            "after = \"3 d\"",
            "workflow[1].after: bad duration",
        ),
        // caps
        (
            "max_per_day = 2",
            "max_per_day = 0",
            "engagement[4].max_per_day: a cap must be a count from 1",
        ),
        (
            "max_per_day = 2",
            "max_per_day = 1.5",
            "engagement[4].max_per_day: expected a whole number",
        ),
        (
            "max_points = 20",
            "max_points = 0",
            "engagement[0].max_points: a cap must be positive, not 0",
        ),
        // thresholds
        (
            "engagement_at_least = 60",
            "engagement_at_least = -1",
            "stages.MQL.engagement_at_least: a threshold must be zero or more",
        ),
        (
            "fit_at_least = 20",
            "fit_at_least = 1e12",
            "stages.MQL.fit_at_least: 1000000000000 is out of range",
        ),
        (
            "fit_at_least = 20",
            "fit_at_least = \"20\"",
            "stages.MQL.fit_at_least: expected a number, found a string",
        ),
        (
            "fit_at_least = 20",
            "fit_at_least = 20\ngrade_at_least = \"Z\"",
            "stages.MQL.grade_at_least: unknown grade \"Z\"",
        ),
        ("C = 20", "C = 30", "grades.C: same threshold 30 as grade B"),
        (
            "D = 10",
            "D = 10\nF = 0",
            "grades.F: F is the grade below every band",
        ),
        // regexes and matchers
        (
            "at_least = 200",
            "at_least = 200\nequals = \"x\"",
            "fit[1]: needs exactly one of equals",
        ),
        (
            "one_of = [\"software\", \"fintech\", \"healthcare\"]",
            "one_of = [\"software\", \"software\"]",
            "fit[2].one_of[1]: \"software\" is listed twice",
        ),
        // undesirables
        (
            "points = -20",
            "points = 20",
            "undesirable[3].points: an undesirable takes points away",
        ),
        (
            "id = \"hard-bounce\"\ntype = \"email_bounced\"",
            "id = \"hard-bounce\"\ntype = \"email_bounced\"\nattribute = \"x\"",
            "undesirable[4]: an undesirable reads either",
        ),
        // vocabulary references
        (
            "sales_ready_actions = [\"demo_requested\", \"contact_requested\"]",
            "sales_ready_actions = [\"demo_request\"]",
            "stages.SQL.sales_ready_actions[0]: unknown engagement type \"demo_request\" (did you mean \"demo_requested\"?)",
        ),
        (
            "until = \"sales_contacted\"",
            "until = \"sales_called\"",
            "sla.sql_first_contact.until: unknown engagement type \"sales_called\"",
        ),
        (
            "\"trial_started\", \"demo_requested\"",
            "\"trial_started\", \"trial_started\"",
            "engagements.types[9]: \"trial_started\" is listed twice",
        ),
        // SLAs
        (
            "stage = \"SQL\"\nwithin",
            "stage = \"SQL-ish\"\nwithin",
            "sla.sql_first_contact.stage: unknown stage \"SQL-ish\"",
        ),
        (
            "idle = true",
            "idle = true\nuntil = \"sales_contacted\"",
            "sla.mql_idle: takes until = \"<type>\" or idle = true, not both",
        ),
        (
            "then = \"recycle\"",
            "then = \"delete\"",
            "sla.mql_idle.then: unknown action \"delete\"",
        ),
        (
            "recycle = [\"went_dark\", \"timing\", \"idle\"]",
            "recycle = [\"went_dark\", \"timing\"]",
            "sla.mql_idle.then: a recycle by this SLA gives the reason \"idle\"",
        ),
        // workflows
        (
            "on = \"rejected:not_ready\"",
            "on = \"rejected:not_redy\"",
            "workflow[2].on: unknown reject reason \"not_redy\" (did you mean \"not_ready\"?)",
        ),
        (
            "on = \"entered:MQL\"\nemit = \"mql_welcome_sequence\"",
            "on = \"entered:LEAD\"\nemit = \"mql_welcome_sequence\"",
            "workflow[0].on: unknown stage \"LEAD\"",
        ),
        (
            "on = \"engagement_below:30\"",
            "on = \"engagement_below:thirty\"",
            "workflow[3].on: \"thirty\" is not a score threshold",
        ),
        (
            "on = \"engagement_below:30\"",
            "on = \"sla_breached:nope\"",
            "workflow[3].on: unknown SLA \"nope\"",
        ),
        (
            "on = \"engagement_below:30\"",
            "on = \"clicked:button\"",
            "workflow[3].on: unknown event \"clicked\"",
        ),
        (
            "if_still = \"MQL\"\nemit = \"mql_followup_day3\"",
            "if_still = \"SQL\"\nemit = \"mql_followup_day3\"",
            "workflow[1].if_still: can never fire",
        ),
        (
            "id = \"mql-day-3\"",
            "id = \"mql-welcome\"",
            "workflow[1].id: duplicate rule id \"mql-welcome\"",
        ),
        (
            "emit = \"long_term_nurture\"",
            "emit = \"\"",
            "workflow[2].emit: must not be empty",
        ),
        // control characters, and ids that would end up in keys
        (
            "name = \"acme-b2b\"",
            "name = \"acme\\u0000b2b\"",
            "name: contains control characters",
        ),
        (
            "id = \"mql-day-3\"",
            "id = \"mql day 3\"",
            "workflow[1].id: \"mql day 3\" is not an id",
        ),
        (
            "[sla.mql_idle]",
            "[sla.\"mql idle\"]",
            "sla.mql idle: \"mql idle\" is not an id",
        ),
    ];
    for (replace, with, expected) in cases {
        assert_has(&edited(replace, with), expected);
    }
}

#[test]
fn missing_sections_are_named() {
    let errs = errors("name = \"bare\"");
    assert_has(&errs, "engagements.types: required");
    assert_has(&errs, "stages.MQL: required");
    assert_has(&errors("[decay]\nhalf_life = \"1d\""), "name: required");
}

#[test]
fn broken_toml_is_reported_with_its_position() {
    let errs = errors("name = \"x\"\n[stages.MQL\n");
    assert_eq!(errs.len(), 1);
    assert!(errs[0].starts_with("not valid TOML"), "{errs:?}");
    assert!(errs[0].contains("line 2"), "{errs:?}");
}

#[test]
fn a_syntax_error_on_a_huge_line_quotes_only_its_surroundings() {
    // The error in the middle of a 200 KB line: the excerpt is cut on both
    // sides and the caret still points at the offending character.
    let items = "1, ".repeat(35_000);
    let toml = format!("name = \"x\"\nlist = [{items}oops, {items}]\n");
    let errs = errors(&toml);
    assert_eq!(errs.len(), 1);
    let message = &errs[0];
    assert!(message.len() < 1_000, "{} bytes: {message:.300}", message.len());
    let column = "list = [".len() + items.len() + 1;
    assert!(
        message.starts_with(&format!("not valid TOML at line 2, column {column}: ")),
        "{message}"
    );
    let lines: Vec<&str> = message.lines().collect();
    let excerpt = lines.iter().find(|l| l.starts_with("2 | ")).expect("the line");
    let caret = lines.last().expect("the caret");
    assert!(
        excerpt.starts_with("2 | …") && excerpt.ends_with('…'),
        "{excerpt}"
    );
    let at = caret.chars().position(|c| c == '^').expect("a caret");
    let pointed: String = excerpt.chars().skip(at).take(4).collect();
    assert_eq!(pointed, "oops", "{excerpt}\n{caret}");

    // At the end of a long line, and on a short one: nothing is cut.
    let errs = errors(&format!("name = \"{}", "x".repeat(200_000)));
    assert!(errs[0].len() < 1_000, "{:.300}", errs[0]);
    assert!(errs[0].contains("line 1") && errs[0].contains("…"), "{}", errs[0]);
    let errs = errors("name = \"x\"\n[stages.MQL\n");
    assert!(errs[0].contains("2 | [stages.MQL\n"), "{}", errs[0]);
    assert!(!errs[0].contains('…'), "{}", errs[0]);
}

#[test]
fn messages_quoting_huge_values_are_cut() {
    let long = "w".repeat(100_000);
    let errs = edited(
        "type = \"webinar_attended\"",
        &format!("type = \"{long}\"\n{long} = 1"),
    );
    assert_eq!(errs.len(), 2, "{errs:.300?}");
    for e in &errs {
        assert!(e.chars().count() < 900, "{} chars: {e:.300}", e.chars().count());
        assert!(e.contains(" … "), "{e:.300}");
    }
    assert!(errs.iter().any(|e| e.contains("unknown engagement type")));
    assert!(errs.iter().any(|e| e.contains("unknown key")));
}

/// The warnings of the example policy edited with each `(replace, with)`,
/// its levels first raised out of the way of the MQL bars tried.
fn warnings(edits: &[(&str, &str)]) -> Vec<String> {
    let mut toml = example_toml()
        .replacen("engagement_at_least = 90", "engagement_at_least = 6000", 1)
        .replacen("engagement_at_least = 120", "engagement_at_least = 7000", 1);
    for (replace, with) in edits {
        assert!(toml.contains(replace), "no {replace:?} in the example");
        toml = toml.replacen(replace, with, 1);
    }
    Policy::from_toml(&toml)
        .expect("warnings do not make a policy invalid")
        .warnings()
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// Caps on the example's uncapped positive rules: together the positive
/// rules give at most 20 + 30 + 30 + 10 + 40 + 30 + 20 + 20 + 9 = 209.
const CAPPED: &[(&str, &str)] = &[
    (
        "points = 15\n\n[[engagement]]\nid = \"ebook\"",
        "points = 15\nmax_points = 30\n\n[[engagement]]\nid = \"ebook\"",
    ),
    ("max_per_day = 2", "max_per_day = 2\nmax_points = 40"),
    (
        "type = \"trial_started\"\npoints = 30",
        "type = \"trial_started\"\npoints = 30\nmax_points = 30",
    ),
];

#[test]
fn an_unreachable_engagement_threshold_is_a_warning() {
    assert_eq!(warnings(&[]), Vec::<String>::new(), "the example is fine");
    // One uncapped positive rule is enough to reach anything.
    assert_eq!(
        warnings(&[("engagement_at_least = 60", "engagement_at_least = 5000")]),
        Vec::<String>::new()
    );
    let mut edits = CAPPED.to_vec();
    edits.push(("engagement_at_least = 60", "engagement_at_least = 5000"));
    assert_eq!(
        warnings(&edits),
        [
            "stages.MQL.engagement_at_least: unreachable: every positive engagement rule has max_points, \
          and together they give at most 209, below 5000"
        ]
    );
    // Exactly the sum is reachable; negative rules do not count against it.
    let mut edits = CAPPED.to_vec();
    edits.push(("engagement_at_least = 60", "engagement_at_least = 209"));
    assert_eq!(warnings(&edits), Vec::<String>::new());
    let p = Policy::from_toml(
        &CAPPED
            .iter()
            .fold(example_toml(), |t, (a, b)| t.replacen(a, b, 1)),
    )
    .expect("valid");
    assert_eq!(p.most_engagement(0), Some(209.0));
    assert_eq!(
        leadflow_domain::policy::PolicyWarning {
            path: "p".to_owned(),
            message: "m".to_owned(),
        }
        .to_string(),
        "p: m"
    );
}

#[test]
fn an_unreachable_fit_threshold_or_grade_is_a_warning() {
    // title 15 + company_size 15 + industry 10
    assert_eq!(
        warnings(&[("fit_at_least = 20", "fit_at_least = 40")]),
        Vec::<String>::new()
    );
    assert_eq!(
        warnings(&[("fit_at_least = 20", "fit_at_least = 41")]),
        [
            "stages.MQL.fit_at_least: unreachable: the fit rules give at most 40 \
          (the best positive points per attribute, summed), below 41"
        ]
    );
    // Rules on one attribute that exclude each other give their best, not
    // their sum: a small company gets 5 or a mid-market one 15, never 20.
    let small = "[[fit]]\nid = \"small\"\nattribute = \"company_size\"\nat_most = 50\npoints = 5\n\n[[fit]]\nid = \"mid-market\"";
    assert_eq!(
        warnings(&[
            ("fit_at_least = 20", "fit_at_least = 41"),
            ("[[fit]]\nid = \"mid-market\"", small)
        ])
        .len(),
        1
    );
    // Rules that match one value together add up: 1000 people is mid-market
    // and large, 25 points; with title and industry, 50 is reachable.
    let large = "[[fit]]\nid = \"large\"\nattribute = \"company_size\"\nat_least = 1000\npoints = 10\n\n[[fit]]\nid = \"mid-market\"";
    assert_eq!(
        warnings(&[
            ("fit_at_least = 20", "fit_at_least = 50"),
            ("[[fit]]\nid = \"mid-market\"", large)
        ]),
        Vec::<String>::new()
    );
    // A regex may match whatever else matches, so its points always count.
    let titled = "[[fit]]\nid = \"engineer\"\nattribute = \"title\"\nmatches = \"(?i)engineer\"\npoints = 5\n\n[[fit]]\nid = \"mid-market\"";
    assert_eq!(
        warnings(&[
            ("fit_at_least = 20", "fit_at_least = 45"),
            ("[[fit]]\nid = \"mid-market\"", titled)
        ]),
        Vec::<String>::new()
    );

    assert_eq!(
        warnings(&[
            (
                "requires_attributes",
                "grade_at_least = \"A\"\nrequires_attributes"
            ),
            ("A = 40", "A = 45"),
        ]),
        [
            "stages.MQL.grade_at_least: unreachable: grade A needs a fit of 45, and the fit rules give at most 40"
        ]
    );
    assert_eq!(
        warnings(&[(
            "requires_attributes",
            "grade_at_least = \"A\"\nrequires_attributes"
        )]),
        Vec::<String>::new()
    );
}

#[test]
fn a_policy_without_decay_keeps_scores() {
    let toml = example_toml().replacen("[decay]\nhalf_life = \"30d\"\n", "", 1);
    let p = Policy::from_toml(&toml).expect("valid");
    assert_eq!(p.half_life, None);
}

/// The problems for a document, each as `(path, line, column)`.
fn placed(toml: &str) -> Vec<(String, usize, usize)> {
    match Policy::from_toml(toml) {
        Ok(_) => panic!("expected the policy to be refused:\n{toml}"),
        Err(e) => {
            e.0.iter()
                .map(|e| {
                    let place = e.place.unwrap_or_else(|| panic!("{e} has no place"));
                    (e.path.clone(), place.line, place.column)
                })
                .collect()
        }
    }
}

/// The 1-based line and column (in characters) of the first `needle` in
/// `text` at or after the start of the line that holds `after`.
fn position(text: &str, after: &str, needle: &str) -> (usize, usize) {
    let from = text.find(after).expect("the anchor is there");
    let from = text[..from].rfind('\n').map_or(0, |i| i + 1);
    let at = from + text[from..].find(needle).expect("the needle is there");
    let line = text[..at].matches('\n').count() + 1;
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    (line, text[line_start..at].chars().count() + 1)
}

fn edit(replace: &str, with: &str) -> String {
    let toml = example_toml();
    assert!(toml.contains(replace), "no {replace:?} in the example");
    toml.replacen(replace, with, 1)
}

#[test]
fn every_problem_carries_its_line_and_column() {
    // A key that does not belong: at the key.
    let toml = edit(
        "engagement_at_least = 60",
        "engagment_at_least = 60\nengagement_at_least = 60",
    );
    let (line, column) = position(&toml, "engagment_at_least", "engagment_at_least");
    assert_eq!(
        placed(&toml),
        [("stages.MQL.engagment_at_least".to_owned(), line, column)]
    );

    // A bad value: at the value.
    let toml = edit("max_points = 30", "max_points = -5");
    let (line, column) = position(&toml, "max_points = -5", "-5");
    assert_eq!(
        placed(&toml),
        [("engagement[2].max_points".to_owned(), line, column)]
    );
    assert_eq!(column, 14);

    // A reference to another part of the document: at the reference.
    let toml = edit("type = \"webinar_attended\"", "type = \"webinar_atended\"");
    let (line, column) = position(&toml, "webinar_atended", "\"webinar_atended\"");
    assert_eq!(placed(&toml), [("engagement[1].type".to_owned(), line, column)]);
    let toml = edit("on = \"rejected:not_ready\"", "on = \"rejected:not_redy\"");
    let (line, column) = position(&toml, "rejected:not_redy", "\"rejected");
    assert_eq!(placed(&toml), [("workflow[2].on".to_owned(), line, column)]);

    // A key a table lacks: at the table's header, or the document's start.
    let toml = edit(
        "type = \"webinar_attended\"\npoints = 15\n",
        "type = \"webinar_attended\"\n",
    );
    let header = toml[..toml.find("webinar_attended\"\n").expect("the rule")]
        .rfind("[[engagement]]")
        .expect("its header");
    let line = toml[..header].matches('\n').count() + 1;
    assert_eq!(placed(&toml), [("engagement[1].points".to_owned(), line, 1)]);
    assert_eq!(
        placed(
            "[decay]\nhalf_life = \"1d\"\n[engagements]\ntypes = [\"x\"]\n[stages.MQL]\nengagement_at_least = 1\nfit_at_least = 0"
        ),
        [("name".to_owned(), 1, 1)]
    );

    // Not TOML: where the reader stopped, as its message says.
    let errs = Policy::from_toml("name = \"x\"\n[stages.MQL\n").expect_err("not TOML");
    let place = errs.0[0].place.expect("a syntax error has a place");
    assert_eq!(place.line, 2);
    assert!(
        errs.0[0]
            .message
            .starts_with(&format!("not valid TOML at line 2, column {}:", place.column)),
        "{}",
        errs.0[0].message
    );
}

#[test]
fn columns_count_characters_not_bytes() {
    let toml = edit(
        "type = \"webinar_attended\"\npoints = 15\n",
        "type = \"webinar_attended\"\nwhere = { \"été\" = \"oui\", path_one_of = 5 }\npoints = 15\n",
    );
    let (line, column) = position(&toml, "path_one_of = 5", "5 }");
    assert_eq!(
        placed(&toml),
        [("engagement[1].where.path_one_of".to_owned(), line, column)]
    );
    assert_eq!(
        column,
        "where = { \"été\" = \"oui\", path_one_of = ".chars().count() + 1
    );
}

#[test]
fn thousands_of_problems_on_one_long_line_are_all_placed() {
    // One line of 40,000 empty names: each a problem, each with its column.
    let n = 40_000;
    let toml = format!("name = \"x\"\n[engagements]\ntypes = [{}]\n", "\"\", ".repeat(n));
    let errs = Policy::from_toml(&toml).expect_err("empty names").0;
    let on_the_line: Vec<usize> = errs
        .iter()
        .filter(|e| e.path.starts_with("engagements.types["))
        .map(|e| {
            let place = e.place.expect("placed");
            assert_eq!(place.line, 3, "{e}");
            place.column
        })
        .collect();
    assert_eq!(on_the_line.len(), n);
    let expected: Vec<usize> = (0..n).map(|i| "types = [".len() + 1 + 4 * i).collect();
    assert_eq!(on_the_line, expected);
}

#[test]
fn a_warning_is_placed_by_its_path() {
    use leadflow_domain::policy::place_of;

    let toml = example_toml();
    let (line, column) = position(&toml, "engagement_at_least = 60", "60");
    let place = place_of(&toml, "stages.MQL.engagement_at_least").expect("there");
    assert_eq!((place.line, place.column), (line, column));
    assert_eq!(place.to_string(), format!("{line}:{column}"));
    let (line, _) = position(&toml, "[stages.MQL]", "[stages.MQL]");
    assert_eq!(
        place_of(&toml, "stages.MQL").map(|p| (p.line, p.column)),
        Some((line, 1))
    );
    let (line, column) = position(&toml, "id = \"ebook\"", "\"ebook\"");
    assert_eq!(
        place_of(&toml, "engagement[2].id").map(|p| (p.line, p.column)),
        Some((line, column))
    );
    assert_eq!(place_of(&toml, "stages.MQL.nothing"), None);
    assert_eq!(place_of("[not toml", "stages"), None);
}

/// The example policy with one more engagement rule reading `where`.
fn with_where(conditions: &str) -> String {
    let toml = example_toml();
    let rule = format!(
        "[[engagement]]\nid = \"long-view\"\ntype = \"page_viewed\"\nwhere = {{ {conditions} }}\npoints = 5\n\n[[undesirable]]\nid = \"careers-page\""
    );
    toml.replacen("[[undesirable]]\nid = \"careers-page\"", &rule, 1)
}

/// The `long-view` rule [`with_where`] adds, as parsed.
fn long_view(conditions: &str) -> leadflow_domain::policy::EventRule {
    let p = Policy::from_toml(&with_where(conditions)).expect("valid");
    p.event_rules
        .into_iter()
        .find(|r| r.id == "long-view")
        .expect("the rule")
}

fn page_with(props: &[(&str, &str)]) -> leadflow_domain::Engagement {
    let mut e = crate::common::ev("e1", "page_viewed", crate::common::T0);
    for (k, v) in props {
        e.properties.insert((*k).to_owned(), (*v).to_owned());
    }
    e
}

#[test]
fn numeric_where_conditions_are_bounds_and_strings_keep_equality() {
    use leadflow_domain::policy::PropertyCondition;
    let rule = long_view("seconds_at_least = 120, percent_at_most = 50.5");
    assert_eq!(
        rule.conditions,
        vec![
            PropertyCondition::AtLeast {
                property: "seconds".into(),
                bound: 120.0
            },
            PropertyCondition::AtMost {
                property: "percent".into(),
                bound: 50.5
            },
        ]
    );
    for (seconds, percent, matches) in [
        ("120", "50.5", true),
        (" 300 ", "0", true),
        ("1.2e3", "-3", true),
        ("119.99", "10", false),
        ("200", "50.6", false),
        ("abc", "10", false),
        ("", "10", false),
        ("inf", "10", false),
        ("NaN", "10", false),
    ] {
        let e = page_with(&[("seconds", seconds), ("percent", percent)]);
        assert_eq!(
            rule.matches(&e),
            matches,
            "seconds {seconds:?}, percent {percent:?}"
        );
    }
    assert!(
        !rule.matches(&page_with(&[("percent", "10")])),
        "a missing property never matches"
    );

    // A string keeps the meaning stored versions gave it: equality on a
    // property literally named `seconds_at_least`.
    let rule = long_view("seconds_at_least = \"120\"");
    assert_eq!(
        rule.conditions,
        vec![PropertyCondition::Equals {
            property: "seconds_at_least".into(),
            value: "120".into()
        }]
    );
    assert!(rule.matches(&page_with(&[("seconds_at_least", "120")])));
    assert!(!rule.matches(&page_with(&[("seconds", "500")])));
}

#[test]
fn bad_numeric_where_conditions_are_refused_at_their_paths() {
    for (conditions, expected) in [
        (
            "seconds_at_least = true",
            "expected a number (a bound) or a string (equality), found a boolean",
        ),
        (
            "seconds_at_most = [1]",
            "expected a number (a bound) or a string (equality), found an array",
        ),
        ("seconds_at_least = inf", "out of range"),
        ("seconds_at_least = nan", "out of range"),
        ("seconds_at_least = 1e300", "out of range"),
        ("_at_least = 3", "not a property name"),
        ("seconds = 3", "expected a string, found an integer"),
        (
            "seconds_at_least = 60, seconds_at_most = 30",
            "seconds can never be at least 60 and at most 30",
        ),
    ] {
        let errs = errors(&with_where(conditions));
        assert_has(&errs, "engagement[9].where");
        assert_has(&errs, expected);
    }
}

/// The example with an engagement rule `counting` written with these lines.
fn with_counting(lines: &str) -> String {
    example_toml().replacen(
        "[[undesirable]]\nid = \"careers-page\"",
        &format!(
            "[[engagement]]\nid = \"counting\"\ntype = \"page_viewed\"\npoints = 5\n{lines}\n\n[[undesirable]]\nid = \"careers-page\""
        ),
        1,
    )
}

#[test]
fn counting_rules_take_a_count_and_an_optional_window() {
    let rule = |lines: &str| {
        Policy::from_toml(&with_counting(lines))
            .expect("valid")
            .event_rules
            .into_iter()
            .find(|r| r.id == "counting")
            .expect("the rule")
    };
    assert_eq!(rule("").count, None);
    assert_eq!(
        rule("at_count = 3\nwithin = \"1d\"").count,
        Some(leadflow_domain::policy::Count {
            at: 3,
            within: Some(Span::from_days(1))
        })
    );
    assert_eq!(
        rule("at_count = 1000").count,
        Some(leadflow_domain::policy::Count {
            at: 1000,
            within: None
        })
    );
    // undesirables count too
    let p = Policy::from_toml(&example_toml().replacen(
        "id = \"hard-bounce\"\ntype = \"email_bounced\"",
        "id = \"hard-bounce\"\ntype = \"email_bounced\"\nat_count = 2\nwithin = \"30d\"",
        1,
    ))
    .expect("valid");
    let bounce = p
        .event_rules
        .iter()
        .find(|r| r.id == "hard-bounce")
        .expect("the rule");
    assert_eq!(bounce.count.map(|c| c.at), Some(2));
}

#[test]
fn bad_counting_rules_are_refused_at_their_paths() {
    for (lines, path, expected) in [
        (
            "at_count = 0",
            "at_count",
            "expected a count from 1 to 1000, not 0",
        ),
        (
            "at_count = 1001",
            "at_count",
            "expected a count from 1 to 1000, not 1001",
        ),
        (
            "at_count = -2",
            "at_count",
            "expected a count from 1 to 1000, not -2",
        ),
        (
            "at_count = 2.5",
            "at_count",
            "expected a whole number, found a number",
        ),
        (
            "at_count = \"3\"",
            "at_count",
            "expected a whole number, found a string",
        ),
        (
            "at_count = 3\nwithin = \"a day\"",
            "within",
            "bad duration \"a day\"",
        ),
        (
            "at_count = 3\nwithin = 86400",
            "within",
            "expected a string, found an integer",
        ),
        (
            "within = \"1d\"",
            "within",
            "a window needs a count: add at_count = N",
        ),
    ] {
        let errs = errors(&with_counting(lines));
        assert_has(&errs, &format!("engagement[9].{path}: {expected}"));
    }
}
