-- The last login of each user (NULL for users who never logged in), over everything loaded.
SELECT u.user_id, l.last_login_ts
FROM dim_user AS u
LEFT JOIN (
    SELECT e.user_id, MAX(e.event_ts) AS last_login_ts
    FROM fact_event AS e
    WHERE e.event_name = 'login'
    GROUP BY e.user_id
) AS l ON l.user_id = u.user_id
ORDER BY u.user_id
