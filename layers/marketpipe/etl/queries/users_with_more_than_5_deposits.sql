-- Users with more than 5 completed deposits up to the end of a given UTC day.
-- param: as_of date  the UTC day, YYYY-MM-DD
SELECT a.user_id, a.completed_deposits_to_date
FROM fact_daily_user_activity AS a
WHERE a.dt = ?
  AND a.completed_deposits_to_date > 5
ORDER BY a.completed_deposits_to_date DESC, a.user_id
