-- democtl's own bookkeeping inside each demo project: what was seeded, and the
-- deterministic hash helpers the seed uses. (democtl.schema_migrations is created by
-- the migration runner itself, before this file, so that this file is tracked too.)

CREATE SCHEMA IF NOT EXISTS democtl;

-- One row at most: a demo project is seeded once. The seed SQL reads its
-- parameters from this row, so no value is ever formatted into the seed itself.
CREATE TABLE democtl.seed_runs (
    id           integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    demo_id      text NOT NULL CHECK (demo_id ~ '^demo-[a-z0-9]([a-z0-9-]*[a-z0-9])?$'),
    demo_type    text NOT NULL CHECK (demo_type IN ('recruiting-agency', 'enterprise', 'startup')),
    size         text NOT NULL CHECK (size IN ('small', 'medium', 'large')),
    company_name text NOT NULL CHECK (length(company_name) BETWEEN 1 AND 200),
    seeded_at    timestamptz NOT NULL DEFAULT now()
);

-- A 60-bit integer from md5(key): the same key gives the same number in every project,
-- on every PostgreSQL version, unlike random() whose sequence is not guaranteed.
CREATE FUNCTION democtl.h(key text) RETURNS bigint
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT ('x' || substr(md5(key), 1, 15))::bit(60)::bigint $$;

-- 1..n, picked by key.
CREATE FUNCTION democtl.pick(key text, n integer) RETURNS integer
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT (democtl.h(key) % greatest(n, 1))::integer + 1 $$;

-- [0, 1), picked by key.
CREATE FUNCTION democtl.frac(key text) RETURNS double precision
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT democtl.h(key)::double precision / 1152921504606846976.0 $$;

-- One element of a text array, picked by key.
CREATE FUNCTION democtl.choose(key text, options text[]) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT options[democtl.pick(key, cardinality(options))] $$;
