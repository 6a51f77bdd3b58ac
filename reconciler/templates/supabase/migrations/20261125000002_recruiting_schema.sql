-- The starting schema of the Splits Network demo: companies (employers and recruiting
-- agencies), their recruiters, jobs, candidates, applications, placements, and the
-- split-fee agreements by which two recruiters share a placement fee.

CREATE TABLE public.companies (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name           text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    kind           text NOT NULL CHECK (kind IN ('employer', 'agency')),
    industry       text NOT NULL,
    headcount      integer NOT NULL CHECK (headcount > 0),
    is_demo_tenant boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now()
);
-- The branded company the demo is about: exactly one per project.
CREATE UNIQUE INDEX companies_one_demo_tenant ON public.companies (is_demo_tenant) WHERE is_demo_tenant;
CREATE INDEX companies_kind_idx ON public.companies (kind);

CREATE TABLE public.recruiters (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    company_id bigint NOT NULL REFERENCES public.companies (id) ON DELETE CASCADE,
    full_name  text NOT NULL CHECK (length(full_name) > 0),
    email      text NOT NULL UNIQUE CHECK (email ~ '^[^@\s]+@[^@\s]+$'),
    specialty  text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX recruiters_company_idx ON public.recruiters (company_id);

CREATE TABLE public.jobs (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    company_id         bigint NOT NULL REFERENCES public.companies (id) ON DELETE CASCADE,
    owner_recruiter_id bigint REFERENCES public.recruiters (id) ON DELETE SET NULL,
    title              text NOT NULL CHECK (length(title) > 0),
    location           text NOT NULL,
    remote             boolean NOT NULL DEFAULT false,
    salary_min         integer NOT NULL CHECK (salary_min > 0),
    salary_max         integer NOT NULL,
    fee_percent        numeric(5, 2) NOT NULL CHECK (fee_percent > 0 AND fee_percent <= 50),
    status             text NOT NULL DEFAULT 'open'
                       CHECK (status IN ('draft', 'open', 'on_hold', 'filled', 'closed')),
    opened_at          timestamptz NOT NULL DEFAULT now(),
    CHECK (salary_max >= salary_min)
);
CREATE INDEX jobs_company_idx ON public.jobs (company_id);
CREATE INDEX jobs_owner_recruiter_idx ON public.jobs (owner_recruiter_id);
CREATE INDEX jobs_open_idx ON public.jobs (opened_at DESC) WHERE status = 'open';

CREATE TABLE public.candidates (
    id                      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    full_name               text NOT NULL CHECK (length(full_name) > 0),
    email                   text NOT NULL UNIQUE CHECK (email ~ '^[^@\s]+@[^@\s]+$'),
    location                text NOT NULL,
    headline                text NOT NULL,
    years_experience        integer NOT NULL CHECK (years_experience BETWEEN 0 AND 60),
    sourced_by_recruiter_id bigint REFERENCES public.recruiters (id) ON DELETE SET NULL,
    created_at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX candidates_sourced_by_idx ON public.candidates (sourced_by_recruiter_id);

CREATE TABLE public.applications (
    id                        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id                    bigint NOT NULL REFERENCES public.jobs (id) ON DELETE CASCADE,
    candidate_id              bigint NOT NULL REFERENCES public.candidates (id) ON DELETE CASCADE,
    submitted_by_recruiter_id bigint REFERENCES public.recruiters (id) ON DELETE SET NULL,
    stage                     text NOT NULL DEFAULT 'submitted'
                              CHECK (stage IN ('submitted', 'screening', 'interview', 'offer',
                                               'hired', 'rejected', 'withdrawn')),
    applied_at                timestamptz NOT NULL DEFAULT now(),
    UNIQUE (job_id, candidate_id)
);
CREATE INDEX applications_candidate_idx ON public.applications (candidate_id);
CREATE INDEX applications_recruiter_idx ON public.applications (submitted_by_recruiter_id);
CREATE INDEX applications_stage_idx ON public.applications (stage);

CREATE TABLE public.placements (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    application_id bigint NOT NULL UNIQUE REFERENCES public.applications (id) ON DELETE CASCADE,
    start_date     date NOT NULL,
    salary         integer NOT NULL CHECK (salary > 0),
    fee_amount     numeric(12, 2) NOT NULL CHECK (fee_amount >= 0),
    placed_at      timestamptz NOT NULL DEFAULT now()
);

-- Two recruiters share one placement fee: the one who holds the job and the one who
-- brought the candidate. Their shares are whole percentages of the fee summing to 100.
CREATE TABLE public.split_fee_agreements (
    id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id                 bigint NOT NULL REFERENCES public.jobs (id) ON DELETE CASCADE,
    placement_id           bigint UNIQUE REFERENCES public.placements (id) ON DELETE SET NULL,
    job_recruiter_id       bigint NOT NULL REFERENCES public.recruiters (id) ON DELETE RESTRICT,
    candidate_recruiter_id bigint NOT NULL REFERENCES public.recruiters (id) ON DELETE RESTRICT,
    job_side_percent       numeric(5, 2) NOT NULL CHECK (job_side_percent BETWEEN 0 AND 100),
    candidate_side_percent numeric(5, 2) NOT NULL CHECK (candidate_side_percent BETWEEN 0 AND 100),
    status                 text NOT NULL DEFAULT 'proposed'
                           CHECK (status IN ('proposed', 'active', 'paid', 'cancelled')),
    created_at             timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT split_fee_shares_sum_to_100 CHECK (job_side_percent + candidate_side_percent = 100),
    CONSTRAINT split_fee_two_recruiters CHECK (job_recruiter_id <> candidate_recruiter_id),
    UNIQUE (job_id, job_recruiter_id, candidate_recruiter_id)
);
CREATE INDEX split_fee_job_recruiter_idx ON public.split_fee_agreements (job_recruiter_id);
CREATE INDEX split_fee_candidate_recruiter_idx ON public.split_fee_agreements (candidate_recruiter_id);

-- Supabase exposes `public` through its REST API: nothing is readable with the anon
-- key until the platform adds its policies (the service role bypasses RLS).
ALTER TABLE public.companies ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.recruiters ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.candidates ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.applications ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.placements ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.split_fee_agreements ENABLE ROW LEVEL SECURITY;
