//! docs/DESIGN.md's ERD matches the schema: every table and column of a freshly migrated database is in the
//! diagram, and the diagram lists nothing the schema does not have. A migration that adds a column fails this
//! test until the diagram shows it.

use std::collections::{BTreeMap, BTreeSet};

use concert_tests::TestEnv;

/// Tables of the migration tool, not of the service.
const NOT_OURS: &[&str] = &["_sqlx_migrations"];

/// Table name to column names, from the first `erDiagram` block of the document.
fn erd_tables(markdown: &str) -> BTreeMap<String, BTreeSet<String>> {
    let block = markdown
        .split("```mermaid")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .find(|block| block.trim_start().starts_with("erDiagram"))
        .expect("docs/DESIGN.md has a ```mermaid erDiagram block");
    let mut tables = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in block.lines().map(str::trim) {
        if let Some(name) = line.strip_suffix('{').map(str::trim) {
            current = Some(name.to_owned());
            tables.insert(name.to_owned(), BTreeSet::new());
        } else if line == "}" {
            current = None;
        } else if let Some(table) = &current {
            // `type name [keys] ["note"]`
            let mut words = line.split_whitespace();
            let (Some(_type), Some(column)) = (words.next(), words.next()) else {
                continue;
            };
            tables
                .get_mut(table)
                .expect("opened above")
                .insert(column.to_owned());
        }
    }
    tables
}

#[tokio::test]
async fn erd_lists_every_table_and_column() {
    let env = TestEnv::new().await;
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.columns
         WHERE table_schema = 'public' ORDER BY table_name, ordinal_position",
    )
    .fetch_all(&env.db)
    .await
    .expect("reading the schema");
    let mut schema: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (table, column) in rows {
        if !NOT_OURS.contains(&table.as_str()) {
            schema.entry(table).or_default().insert(column);
        }
    }
    assert!(schema.contains_key("seats"), "the schema was read");

    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/DESIGN.md");
    let markdown = std::fs::read_to_string(path).expect("reading docs/DESIGN.md");
    let erd = erd_tables(&markdown);

    let mut drift = Vec::new();
    for (table, columns) in &schema {
        match erd.get(table) {
            None => drift.push(format!("table {table} is missing from the ERD")),
            Some(drawn) => {
                for column in columns.difference(drawn) {
                    drift.push(format!("{table}.{column} is missing from the ERD"));
                }
                for column in drawn.difference(columns) {
                    drift.push(format!(
                        "{table}.{column} is in the ERD but not in the schema"
                    ));
                }
            }
        }
    }
    for table in erd.keys().filter(|t| !schema.contains_key(*t)) {
        drift.push(format!("table {table} is in the ERD but not in the schema"));
    }
    assert!(
        drift.is_empty(),
        "docs/DESIGN.md's ERD does not match migrations/:\n{}",
        drift.join("\n")
    );
}

#[test]
fn the_erd_reader_reads_tables_columns_and_keys() {
    let doc = "text\n```mermaid\nerDiagram\n  a {\n    uuid id PK\n    text b \"note\"\n  }\n  a ||--o{ c : \"x\"\n```\n";
    let tables = erd_tables(doc);
    assert_eq!(tables.len(), 1);
    assert_eq!(
        tables["a"],
        BTreeSet::from(["id".to_owned(), "b".to_owned()])
    );
}
