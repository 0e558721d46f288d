-- Room on each page for updated row versions, so that PostgreSQL can update `facts` and
-- `fact_history` rows in place (HOT: heap-only tuples, no new index entries). Every ingest
-- rewrites each reported subject's latest fact and extends its history run; with full pages
-- every such update also inserted into each index and later cleaned the duplicates up (the
-- benchmark's profile: about a fifth of PostgreSQL's CPU under load). Neither update touches an
-- indexed column. Applies to pages written from now on.
ALTER TABLE facts SET (fillfactor = 50);
ALTER TABLE fact_history SET (fillfactor = 70);
