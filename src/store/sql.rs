//! Statements built at run time (filters, `IN` lists, multi-row `VALUES`)
//! with each backend's placeholders: numbered (`$1`, `$2`, ...) for
//! PostgreSQL, which refuses sqlx's `?` for its `Any` driver, and `?` for
//! SQLite, which looks each `$N` up among the statement's names (a
//! multi-row insert of thousands of values would spend most of its time
//! there).

use std::fmt::Write as _;

use sqlx::any::{Any, AnyArguments};
use sqlx::query::Query;
use sqlx::{Arguments as _, Encode, Type};

use super::Kind;

/// A statement and its bound values, built piece by piece.
pub(crate) struct Sql<'a> {
    text: String,
    arguments: AnyArguments<'a>,
    count: usize,
    numbered: bool,
}

impl<'a> Sql<'a> {
    pub fn new(kind: Kind, text: impl Into<String>) -> Self {
        Sql {
            text: text.into(),
            arguments: AnyArguments::default(),
            count: 0,
            numbered: kind == Kind::Postgres,
        }
    }

    /// Appends SQL text.
    pub fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder bound to `value`.
    pub fn bind<T: 'a + Encode<'a, Any> + Type<Any>>(&mut self, value: T) -> &mut Self {
        self.count += 1;
        if self.numbered {
            write!(self.text, "${}", self.count).expect("writing to a String");
        } else {
            self.text.push('?');
        }
        self.arguments
            .add(value)
            .expect("the values the store binds (text, integers, bytes) encode");
        self
    }

    /// Appends `(v1, v2, ...)`; `values` must not be empty.
    pub fn list<T: 'a + Encode<'a, Any> + Type<Any>>(&mut self, values: impl IntoIterator<Item = T>) -> &mut Self {
        self.text.push('(');
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                self.text.push_str(", ");
            }
            self.bind(value);
        }
        self.text.push(')');
        self
    }

    /// Appends `VALUES (...), (...)`: `row` binds one item's values.
    pub fn values<I: IntoIterator>(&mut self, items: I, mut row: impl FnMut(&mut Tuple<'_, 'a>, I::Item)) -> &mut Self {
        self.text.push_str("VALUES ");
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                self.text.push_str(", ");
            }
            self.text.push('(');
            row(&mut Tuple { sql: self, first: true }, item);
            self.text.push(')');
        }
        self
    }

    /// The statement with its values, ready to run (once).
    pub fn build(&mut self) -> Query<'_, Any, AnyArguments<'_>> {
        sqlx::query_with(&self.text, std::mem::take(&mut self.arguments))
    }
}

/// One row of [`Sql::values`].
pub(crate) struct Tuple<'s, 'a> {
    sql: &'s mut Sql<'a>,
    first: bool,
}

impl<'a> Tuple<'_, 'a> {
    pub fn bind<T: 'a + Encode<'a, Any> + Type<Any>>(&mut self, value: T) -> &mut Self {
        if !std::mem::take(&mut self.first) {
            self.sql.text.push_str(", ");
        }
        self.sql.bind(value);
        self
    }
}
