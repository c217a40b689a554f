-- The logins of one user between two UTC days, both included.
-- param: user_id user_id  the user's id
-- param: start date  first UTC day, YYYY-MM-DD
-- param: end date  last UTC day, YYYY-MM-DD
SELECT e.event_id, e.event_ts
FROM fact_event AS e
WHERE e.user_id = ?
  AND e.dt BETWEEN ? AND ?
  AND e.event_name = 'login'
ORDER BY e.event_ts, e.event_id
