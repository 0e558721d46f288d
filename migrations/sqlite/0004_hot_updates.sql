-- PostgreSQL's 0004 gives `facts` and `fact_history` free space for in-place updates; SQLite has
-- no such setting. This file keeps both backends' migration numbers in step.
SELECT 1;
