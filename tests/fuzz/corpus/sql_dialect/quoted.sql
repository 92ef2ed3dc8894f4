SELECT '?', 'it''s ? {x}', "we""ird?" FROM t -- what? {z}
WHERE a = ? /* why? */