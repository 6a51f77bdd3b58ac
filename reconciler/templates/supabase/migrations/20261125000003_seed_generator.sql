-- The demo-data generator. Every value derives from md5(demo id || ':' || purpose || ...),
-- so the same demo id gives the same rows and another id gives other rows; volume comes
-- from generate_series, so a large seed is one round trip. The parameters (demo id,
-- type, size, company name) are read from democtl.seed_runs, never formatted into SQL.

-- Rows per size: small 1x (50 candidates), medium 10x, large 100x.
CREATE FUNCTION democtl.seed_scale() RETURNS integer
    LANGUAGE sql STABLE
    AS $$
        SELECT CASE size WHEN 'small' THEN 1 WHEN 'medium' THEN 10 WHEN 'large' THEN 100 END
        FROM democtl.seed_runs
    $$;

CREATE FUNCTION democtl.seed_demo(
    tenant_kind text,                   -- 'agency' or 'employer': what the branded company is
    employers integer,                  -- client employers besides the tenant
    agencies integer,                   -- partner agencies besides the tenant
    recruiters_per_company integer,     -- per agency, and in-house at the tenant
    jobs integer,
    candidates integer,
    applications_per_candidate integer,
    split_share double precision        -- share of placements whose fee is split
) RETURNS integer
    LANGUAGE plpgsql
    AS $fn$
DECLARE
    run democtl.seed_runs;
    k text;
    epoch constant timestamptz := '2026-01-05 09:00:00+00';
    tenant_id bigint;
    employer_ids bigint[];
    tenant_recruiters bigint[];
    sourcing_recruiters bigint[];
    job_ids bigint[];
    total integer := 0;
    n integer;
    first_names constant text[] := ARRAY['Ada', 'Ben', 'Chloe', 'Dev', 'Elena', 'Farid', 'Grace',
        'Hiro', 'Ines', 'Jonas', 'Kemi', 'Liam', 'Maya', 'Nils', 'Omar', 'Priya', 'Quinn', 'Rosa',
        'Sami', 'Tara', 'Uma', 'Victor', 'Wen', 'Ximena', 'Yusuf', 'Zoe'];
    last_names constant text[] := ARRAY['Adeyemi', 'Bauer', 'Chen', 'Dubois', 'Eriksen', 'Fischer',
        'Garcia', 'Haddad', 'Ivanova', 'Jensen', 'Kowalski', 'Lopez', 'Murphy', 'Nakamura', 'Okafor',
        'Patel', 'Rossi', 'Schmidt', 'Tanaka', 'Usman', 'Varga', 'Walsh', 'Yilmaz', 'Zhang'];
    company_words constant text[] := ARRAY['Northwind', 'Bluepeak', 'Ironleaf', 'Cobalt', 'Harbor',
        'Summit', 'Brightline', 'Granite', 'Lumen', 'Meridian', 'Orchard', 'Quarry', 'Redwood',
        'Silverline', 'Tidewater', 'Vantage'];
    company_suffixes constant text[] := ARRAY['Labs', 'Systems', 'Health', 'Logistics', 'Energy',
        'Foods', 'Robotics', 'Finance', 'Media', 'Retail'];
    agency_suffixes constant text[] := ARRAY['Talent', 'Search', 'Recruiting', 'Partners',
        'Staffing', 'Executive Search'];
    industries constant text[] := ARRAY['Software', 'Healthcare', 'Logistics', 'Energy',
        'Financial Services', 'Manufacturing', 'Retail', 'Media'];
    titles constant text[] := ARRAY['Senior Backend Engineer', 'Frontend Engineer', 'Data Scientist',
        'Product Manager', 'DevOps Engineer', 'Account Executive', 'Finance Manager',
        'Registered Nurse', 'Supply Chain Analyst', 'UX Designer', 'Site Reliability Engineer',
        'Head of Sales', 'Mechanical Engineer', 'Customer Success Manager'];
    locations constant text[] := ARRAY['New York, NY', 'Austin, TX', 'Chicago, IL', 'Denver, CO',
        'Seattle, WA', 'Boston, MA', 'Atlanta, GA', 'Toronto, ON', 'London, UK', 'Remote'];
    specialties constant text[] := ARRAY['Engineering', 'Sales', 'Finance', 'Healthcare',
        'Operations', 'Executive', 'Design'];
BEGIN
    SELECT * INTO STRICT run FROM democtl.seed_runs;
    k := run.demo_id;

    INSERT INTO public.companies (name, kind, industry, headcount, is_demo_tenant, created_at)
    VALUES (run.company_name, tenant_kind,
            democtl.choose(k || ':tenant:industry', industries),
            CASE run.demo_type WHEN 'startup' THEN 12 + democtl.pick(k || ':tenant:hc', 60)
                               WHEN 'enterprise' THEN 5000 + democtl.pick(k || ':tenant:hc', 45000)
                               ELSE 40 + democtl.pick(k || ':tenant:hc', 400) END,
            true, epoch - interval '400 days')
    RETURNING id INTO tenant_id;
    total := total + 1;

    INSERT INTO public.companies (name, kind, industry, headcount, created_at)
    SELECT democtl.choose(k || ':co:w:' || kind || i, company_words) || ' '
               || CASE kind WHEN 'employer'
                      THEN democtl.choose(k || ':co:s:' || i, company_suffixes)
                      ELSE democtl.choose(k || ':ag:s:' || i, agency_suffixes) END,
           kind,
           democtl.choose(k || ':co:ind:' || kind || i, industries),
           10 + democtl.pick(k || ':co:hc:' || kind || i, 20000),
           epoch - make_interval(days => democtl.pick(k || ':co:age:' || kind || i, 900))
    FROM (SELECT 'employer' AS kind, i FROM generate_series(1, employers) AS i
          UNION ALL
          SELECT 'agency', i FROM generate_series(1, agencies) AS i) AS c
    ORDER BY kind DESC, i;
    GET DIAGNOSTICS n = ROW_COUNT;
    total := total + n;

    INSERT INTO public.recruiters (company_id, full_name, email, specialty, created_at)
    SELECT c.id, p.first_name || ' ' || p.last_name,
           lower(p.first_name || '.' || p.last_name || '.' || c.id || '.' || r)
               || '@recruiter' || c.id || '.example',
           democtl.choose(k || ':rec:sp:' || c.id || ':' || r, specialties),
           c.created_at + make_interval(days => democtl.pick(k || ':rec:age:' || c.id || ':' || r, 300))
    FROM public.companies AS c
    CROSS JOIN generate_series(1, recruiters_per_company) AS r
    CROSS JOIN LATERAL (
        SELECT democtl.choose(k || ':rec:fn:' || c.id || ':' || r, first_names) AS first_name,
               democtl.choose(k || ':rec:ln:' || c.id || ':' || r, last_names) AS last_name
    ) AS p
    WHERE c.kind = 'agency' OR c.is_demo_tenant
    ORDER BY c.id, r;
    GET DIAGNOSTICS n = ROW_COUNT;
    total := total + n;

    employer_ids := ARRAY(SELECT id FROM public.companies WHERE kind = 'employer' ORDER BY id);
    tenant_recruiters := ARRAY(SELECT id FROM public.recruiters WHERE company_id = tenant_id ORDER BY id);
    sourcing_recruiters := ARRAY(
        SELECT r.id FROM public.recruiters AS r JOIN public.companies AS c ON c.id = r.company_id
        WHERE c.kind = 'agency' ORDER BY r.id);

    INSERT INTO public.jobs (company_id, owner_recruiter_id, title, location, remote,
                             salary_min, salary_max, fee_percent, status, opened_at)
    SELECT CASE WHEN tenant_kind = 'employer' THEN tenant_id
                ELSE employer_ids[democtl.pick(k || ':job:co:' || i, cardinality(employer_ids))] END,
           tenant_recruiters[democtl.pick(k || ':job:owner:' || i, cardinality(tenant_recruiters))],
           democtl.choose(k || ':job:title:' || i, titles),
           democtl.choose(k || ':job:loc:' || i, locations),
           democtl.frac(k || ':job:remote:' || i) < 0.3,
           s.low, s.low + 10000 + 1000 * democtl.pick(k || ':job:spread:' || i, 40),
           (ARRAY[15, 18, 20, 22, 25])[democtl.pick(k || ':job:fee:' || i, 5)],
           CASE WHEN f < 0.70 OR i = 1 THEN 'open' WHEN f < 0.80 THEN 'on_hold'
                WHEN f < 0.92 THEN 'filled' ELSE 'closed' END,
           epoch - make_interval(days => democtl.pick(k || ':job:age:' || i, 120))
    FROM generate_series(1, jobs) AS i
    CROSS JOIN LATERAL (SELECT 60000 + 1000 * democtl.pick(k || ':job:sal:' || i, 100) AS low,
                               democtl.frac(k || ':job:status:' || i) AS f) AS s
    ORDER BY i;
    GET DIAGNOSTICS n = ROW_COUNT;
    total := total + n;
    job_ids := ARRAY(SELECT id FROM public.jobs ORDER BY id);

    INSERT INTO public.candidates (full_name, email, location, headline, years_experience,
                                   sourced_by_recruiter_id, created_at)
    SELECT p.first_name || ' ' || p.last_name,
           lower(p.first_name || '.' || p.last_name || '.' || i) || '@mail.example',
           democtl.choose(k || ':cand:loc:' || i, locations),
           democtl.choose(k || ':cand:title:' || i, titles),
           democtl.pick(k || ':cand:yrs:' || i, 26) - 1,
           sourcing_recruiters[democtl.pick(k || ':cand:rec:' || i, cardinality(sourcing_recruiters))],
           epoch - make_interval(days => democtl.pick(k || ':cand:age:' || i, 365))
    FROM generate_series(1, candidates) AS i
    CROSS JOIN LATERAL (
        SELECT democtl.choose(k || ':cand:fn:' || i, first_names) AS first_name,
               democtl.choose(k || ':cand:ln:' || i, last_names) AS last_name
    ) AS p
    ORDER BY i;
    GET DIAGNOSTICS n = ROW_COUNT;
    total := total + n;

    INSERT INTO public.applications (job_id, candidate_id, submitted_by_recruiter_id, stage, applied_at)
    SELECT job_ids[democtl.pick(k || ':app:job:' || c.id || ':' || a, cardinality(job_ids))],
           c.id, c.sourced_by_recruiter_id,
           CASE WHEN f < 0.35 THEN 'submitted' WHEN f < 0.55 THEN 'screening'
                WHEN f < 0.70 THEN 'interview' WHEN f < 0.78 THEN 'offer'
                WHEN f < 0.86 THEN 'hired' WHEN f < 0.96 THEN 'rejected' ELSE 'withdrawn' END,
           c.created_at + make_interval(days => democtl.pick(k || ':app:age:' || c.id || ':' || a, 60))
    FROM public.candidates AS c
    CROSS JOIN generate_series(1, applications_per_candidate) AS a
    CROSS JOIN LATERAL (SELECT democtl.frac(k || ':app:stage:' || c.id || ':' || a) AS f) AS s
    ORDER BY c.id, a
    ON CONFLICT (job_id, candidate_id) DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    total := total + n;

    INSERT INTO public.placements (application_id, start_date, salary, fee_amount, placed_at)
    SELECT a.id, (a.applied_at + interval '45 days')::date, pay.salary,
           round(pay.salary * j.fee_percent / 100, 2), a.applied_at + interval '21 days'
    FROM public.applications AS a
    JOIN public.jobs AS j ON j.id = a.job_id
    CROSS JOIN LATERAL (SELECT j.salary_min + ((j.salary_max - j.salary_min)
                               * democtl.frac(k || ':pl:sal:' || a.id))::integer AS salary) AS pay
    WHERE a.stage = 'hired'
    ORDER BY a.id;
    GET DIAGNOSTICS n = ROW_COUNT;
    total := total + n;

    -- Closed deals: the job holder and the candidate's recruiter split the fee.
    INSERT INTO public.split_fee_agreements (job_id, placement_id, job_recruiter_id,
        candidate_recruiter_id, job_side_percent, candidate_side_percent, status, created_at)
    SELECT j.id, p.id, j.owner_recruiter_id, a.submitted_by_recruiter_id, share, 100 - share,
           CASE WHEN democtl.frac(k || ':split:paid:' || p.id) < 0.6 THEN 'paid' ELSE 'active' END,
           a.applied_at
    FROM public.placements AS p
    JOIN public.applications AS a ON a.id = p.application_id
    JOIN public.jobs AS j ON j.id = a.job_id
    CROSS JOIN LATERAL (SELECT (ARRAY[50, 60, 40, 70, 30])[democtl.pick(k || ':split:share:' || p.id, 5)]
                               AS share) AS s
    WHERE j.owner_recruiter_id <> a.submitted_by_recruiter_id
      AND democtl.frac(k || ':split:' || p.id) < split_share
    ORDER BY p.id
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    total := total + n;

    -- Open jobs offered to a partner recruiter, not placed yet (the first open job always,
    -- so that even the smallest demo shows one).
    INSERT INTO public.split_fee_agreements (job_id, job_recruiter_id, candidate_recruiter_id,
        job_side_percent, candidate_side_percent, status, created_at)
    SELECT j.id, j.owner_recruiter_id, partner.id, 50, 50, 'proposed', j.opened_at + interval '2 days'
    FROM public.jobs AS j
    CROSS JOIN LATERAL (SELECT sourcing_recruiters[democtl.pick(k || ':prop:rec:' || j.id,
                                   cardinality(sourcing_recruiters))] AS id) AS partner
    WHERE j.status = 'open' AND partner.id <> j.owner_recruiter_id
      AND (democtl.frac(k || ':prop:' || j.id) < split_share / 2
           OR j.id = (SELECT min(id) FROM public.jobs WHERE status = 'open'))
    ORDER BY j.id
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    total := total + n;

    RETURN total;
END
$fn$;
