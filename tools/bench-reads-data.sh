# Sourced by tools/bench-reads and tools/bench-ab: the data both read.
# seed_read_data: 1,000 users (or $users), each with 40 habits, 5 goals and one ledger row,
# through the caller's `sql` function (psql on the server's embedded PostgreSQL).
seed_read_data() {
  sql "INSERT INTO users (id, email, display_name, timezone)
       SELECT ('00000000-0000-0000-0000-' || lpad(g::text, 12, '0'))::uuid, 'bench' || g || '@example.com', 'Bench ' || g,
              (ARRAY['UTC', 'Europe/Berlin', 'America/New_York', 'Asia/Tokyo', 'Pacific/Kiritimati'])[1 + g % 5]
       FROM generate_series(0, $users - 1) g;
       INSERT INTO habits (user_id, title, frequency)
       SELECT ('00000000-0000-0000-0000-' || lpad((n % $users)::text, 12, '0'))::uuid, 'Habit ' || n,
              (ARRAY['daily', 'daily', 'weekly', 'monthly'])[1 + n % 4]
       FROM generate_series(1, $users * 40) n;
       INSERT INTO goals (user_id, title, status, priority, completed_at)
       SELECT u.id, 'Goal ' || k, CASE WHEN k <= 2 THEN 'completed' ELSE 'active' END, k, CASE WHEN k <= 2 THEN now() END
       FROM users u, generate_series(1, 5) k;
       INSERT INTO points_ledger (user_id, points, reason) SELECT id, 100 + (hashtext(email) & 1023), 'grant' FROM users" >/dev/null
  sql "VACUUM ANALYZE" >/dev/null
}
