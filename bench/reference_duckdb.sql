-- Reference metering of one month in DuckDB: spec 2, steps 1-4, nothing else
-- (no rating, no findings). Run by bench/reference_duckdb.py, which picks the
-- `records` section for the workload's format, then runs `accounts`, `meter`
-- and `totals`, after replacing {usage}, {parquet}, {directory}, {first_day},
-- {end_day}, {start_us} and {end_us} (days since 1970-01-01, microseconds since
-- the epoch; the month is [first_day, end_day)). {parquet} is the glob of the
-- hourly layout's files: `usage/hourly/dt=*/*.parquet` (days), `flat/*.parquet`
-- or `month/*.parquet`.
--
-- Every section leaves one relation behind:
--   records(storage_account_id, bucket, ts_us, bytes)   one row per usage record
--   accounts(storage_account_id, created_on, deleted_on) the directory's accounts
--   account_usage(storage_account_id, known, byte_days, observed_byte_days,
--                 observed_days, filled_days)           one row per account
-- Arithmetic is exact: sums of BIGINT/UBIGINT are HUGEINT (128-bit).
--
-- Not modelled: "last wins" between duplicate (account, bucket, timestamp)
-- records (the generated workloads have none), and the `max` daily method.

-- @section records hourly-parquet
CREATE VIEW records AS
SELECT storage_account_id, bucket, epoch_us("timestamp") AS ts_us, bytes
FROM read_parquet('{parquet}', hive_partitioning = false);

-- @section records daily-json
-- The partner API export: one record per daily_usage entry, at midnight UTC.
CREATE VIEW records AS
SELECT client_id AS storage_account_id, '' AS bucket,
       (u.date - DATE '1970-01-01')::BIGINT * 86400000000 AS ts_us, u.usage AS bytes
FROM (
    SELECT client_id, unnest(daily_usage) AS u
    FROM read_json('{usage}/partner-api/*/*.json', format = 'array',
                   columns = {client_id: 'VARCHAR', name: 'VARCHAR', allocated_capacity: 'BIGINT',
                              daily_usage: 'STRUCT("date" DATE, "usage" UBIGINT, allocated_capacity BIGINT)[]'})
);

-- @section records daily-csv
CREATE VIEW records AS
SELECT storage_account_id, '' AS bucket,
       ("date" - DATE '1970-01-01')::BIGINT * 86400000000 AS ts_us, bytes
FROM read_csv('{usage}/daily/*/*.csv', header = true,
              columns = {'date': 'DATE', 'storage_account_id': 'VARCHAR', 'bytes': 'UBIGINT'});

-- @section scan
-- The floor: read every record once, decoding the four columns the metering
-- needs (each one feeds an aggregate, so none can be skipped), and nothing else.
SELECT count(*), sum(bytes), sum(length(storage_account_id)), sum(length(bucket)), max(ts_us)
FROM records;

-- @section accounts
CREATE VIEW accounts AS
SELECT storage_account_id, created_on, deleted_on
FROM read_csv('{directory}/storage_accounts.csv', header = true,
              columns = {'storage_account_id': 'VARCHAR', 'company_name': 'VARCHAR', 'owner_id': 'VARCHAR',
                         'created_on': 'DATE', 'deleted_on': 'DATE'});

-- @section meter
CREATE TABLE account_usage AS
WITH
-- Step 1. Snapshots: the sum over buckets per (account, timestamp), records of the month only.
snapshots AS (
    SELECT storage_account_id AS account, ts_us, sum(bytes) AS snapshot
    FROM records
    WHERE ts_us >= {start_us} AND ts_us < {end_us}
    GROUP BY storage_account_id, ts_us
),
-- Step 2. Daily value: the mean of the day's snapshots, rounded half away from
-- zero to whole bytes. Values are non-negative, so that is floor((2s + n) / 2n).
daily AS (
    SELECT account, (ts_us // 86400000000)::INTEGER AS day,
           (2 * sum(snapshot) + count(*)) // (2 * count(*)) AS value
    FROM snapshots
    GROUP BY ALL
),
-- Step 3. Window of every known account within the month, one row per day.
window_days AS (
    SELECT storage_account_id AS account, true AS in_window,
           unnest(range(greatest(coalesce(created_on - DATE '1970-01-01', {first_day}), {first_day}),
                        least(coalesce(deleted_on - DATE '1970-01-01', {end_day}), {end_day})))::INTEGER AS day
    FROM accounts
),
days AS (
    SELECT account, day, d.value
    FROM daily d FULL JOIN window_days w USING (account, day)
),
-- Window days without a snapshot take the nearest earlier observed day of the
-- month, else the nearest later one; days with snapshots always count.
filled AS (
    SELECT account, day, value,
           coalesce(value,
                    last_value(value IGNORE NULLS) OVER (PARTITION BY account ORDER BY day
                                                          ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING),
                    first_value(value IGNORE NULLS) OVER (PARTITION BY account ORDER BY day
                                                           ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING))
               AS filled_value
    FROM days
)
-- Step 4. Byte-days per account: exact integer sums.
SELECT f.account AS storage_account_id,
       a.storage_account_id IS NOT NULL AS known,
       coalesce(sum(filled_value), 0)::HUGEINT AS byte_days,
       coalesce(sum(value), 0)::HUGEINT AS observed_byte_days,
       count(value) AS observed_days,
       count(filled_value) - count(value) AS filled_days
FROM filled f LEFT JOIN accounts a ON a.storage_account_id = f.account
GROUP BY f.account, a.storage_account_id;

-- @section totals
SELECT coalesce(sum(byte_days), 0)::HUGEINT AS total_byte_days,
       coalesce(sum(byte_days) FILTER (WHERE known), 0)::HUGEINT AS known_byte_days,
       coalesce(sum(observed_byte_days), 0)::HUGEINT AS observed_byte_days,
       count(*) AS accounts,
       count(*) FILTER (WHERE NOT known) AS unknown_accounts,
       coalesce(sum(filled_days), 0)::BIGINT AS filled_days
FROM account_usage;
