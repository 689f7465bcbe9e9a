-- PostgreSQL's catalog tables (the columns psql and drivers read), created in the in-memory
-- catalog database; rows for user objects are added by fill.rs.
CREATE TABLE pg_namespace(oid INTEGER PRIMARY KEY, nspname TEXT, nspowner INTEGER, nspacl TEXT);
CREATE TABLE pg_class(oid INTEGER PRIMARY KEY, relname TEXT, relnamespace INTEGER, reltype INTEGER,
  reloftype INTEGER, relowner INTEGER, relam INTEGER, relfilenode INTEGER, reltablespace INTEGER,
  relpages INTEGER, reltuples REAL, relallvisible INTEGER, reltoastrelid INTEGER,
  relhasindex BOOLEAN, relisshared BOOLEAN, relpersistence TEXT, relkind TEXT, relnatts INTEGER,
  relchecks INTEGER, relhasrules BOOLEAN, relhastriggers BOOLEAN, relhassubclass BOOLEAN,
  relrowsecurity BOOLEAN, relforcerowsecurity BOOLEAN, relispopulated BOOLEAN, relreplident TEXT,
  relispartition BOOLEAN, relrewrite INTEGER, relfrozenxid INTEGER, relminmxid INTEGER,
  relacl TEXT, reloptions TEXT, relpartbound TEXT, relhasoids BOOLEAN);
CREATE TABLE pg_attribute(attrelid INTEGER, attname TEXT, atttypid INTEGER, attstattarget INTEGER,
  attlen INTEGER, attnum INTEGER, attndims INTEGER, attcacheoff INTEGER, atttypmod INTEGER,
  attbyval BOOLEAN, attalign TEXT, attstorage TEXT, attcompression TEXT, attnotnull BOOLEAN,
  atthasdef BOOLEAN, atthasmissing BOOLEAN, attidentity TEXT, attgenerated TEXT,
  attisdropped BOOLEAN, attislocal BOOLEAN, attinhcount INTEGER, attcollation INTEGER,
  attacl TEXT, attoptions TEXT, attfdwoptions TEXT, attmissingval TEXT);
CREATE TABLE pg_attrdef(oid INTEGER PRIMARY KEY, adrelid INTEGER, adnum INTEGER, adbin TEXT);
CREATE TABLE pg_index(indexrelid INTEGER, indrelid INTEGER, indnatts INTEGER, indnkeyatts INTEGER,
  indisunique BOOLEAN, indnullsnotdistinct BOOLEAN, indisprimary BOOLEAN, indisexclusion BOOLEAN,
  indimmediate BOOLEAN, indisclustered BOOLEAN, indisvalid BOOLEAN, indcheckxmin BOOLEAN,
  indisready BOOLEAN, indislive BOOLEAN, indisreplident BOOLEAN, indkey TEXT, indcollation TEXT,
  indclass TEXT, indoption TEXT, indexprs TEXT, indpred TEXT);
CREATE TABLE pg_constraint(oid INTEGER PRIMARY KEY, conname TEXT, connamespace INTEGER,
  contype TEXT, condeferrable BOOLEAN, condeferred BOOLEAN, convalidated BOOLEAN,
  conrelid INTEGER, contypid INTEGER, conindid INTEGER, conparentid INTEGER, confrelid INTEGER,
  confupdtype TEXT, confdeltype TEXT, confmatchtype TEXT, conislocal BOOLEAN,
  coninhcount INTEGER, connoinherit BOOLEAN, conkey TEXT, confkey TEXT, conbin TEXT,
  shoal_definition TEXT);
CREATE TABLE pg_type(oid INTEGER PRIMARY KEY, typname TEXT, typnamespace INTEGER, typowner INTEGER,
  typlen INTEGER, typbyval BOOLEAN, typtype TEXT, typcategory TEXT, typispreferred BOOLEAN,
  typisdefined BOOLEAN, typdelim TEXT, typrelid INTEGER, typelem INTEGER, typarray INTEGER,
  typinput TEXT, typoutput TEXT, typnotnull BOOLEAN, typbasetype INTEGER, typtypmod INTEGER,
  typndims INTEGER, typcollation INTEGER, typdefault TEXT, typacl TEXT);
CREATE TABLE pg_am(oid INTEGER PRIMARY KEY, amname TEXT, amhandler TEXT, amtype TEXT);
CREATE TABLE pg_database(oid INTEGER PRIMARY KEY, datname TEXT, datdba INTEGER, encoding INTEGER,
  datlocprovider TEXT, datistemplate BOOLEAN, datallowconn BOOLEAN, datconnlimit INTEGER,
  datcollate TEXT, datctype TEXT, daticulocale TEXT, datcollversion TEXT, datacl TEXT,
  dattablespace INTEGER);
CREATE TABLE pg_roles(oid INTEGER PRIMARY KEY, rolname TEXT, rolsuper BOOLEAN, rolinherit BOOLEAN,
  rolcreaterole BOOLEAN, rolcreatedb BOOLEAN, rolcanlogin BOOLEAN, rolreplication BOOLEAN,
  rolconnlimit INTEGER, rolpassword TEXT, rolvaliduntil TEXT, rolbypassrls BOOLEAN,
  rolconfig TEXT);
CREATE VIEW pg_user AS SELECT rolname AS usename, oid AS usesysid, rolcreatedb AS usecreatedb,
  rolsuper AS usesuper FROM pg_roles;
CREATE VIEW pg_authid AS SELECT * FROM pg_roles;
CREATE TABLE pg_description(objoid INTEGER, classoid INTEGER, objsubid INTEGER, description TEXT);
-- Dependencies between objects: none are recorded (SERIAL columns are SQLite rowids, not
-- columns owning a sequence), so queries that look for owned sequences find none.
CREATE TABLE pg_depend(classid INTEGER, objid INTEGER, objsubid INTEGER, refclassid INTEGER,
  refobjid INTEGER, refobjsubid INTEGER, deptype TEXT);
CREATE TABLE pg_inherits(inhrelid INTEGER, inhparent INTEGER, inhseqno INTEGER,
  inhdetachpending BOOLEAN);
CREATE TABLE pg_trigger(oid INTEGER PRIMARY KEY, tgrelid INTEGER, tgparentid INTEGER, tgname TEXT,
  tgenabled TEXT, tgisinternal BOOLEAN, shoal_definition TEXT);
CREATE TABLE pg_policy(oid INTEGER PRIMARY KEY, polname TEXT, polrelid INTEGER, polcmd TEXT,
  polpermissive BOOLEAN, polroles TEXT, polqual TEXT, polwithcheck TEXT);
CREATE TABLE pg_statistic_ext(oid INTEGER PRIMARY KEY, stxrelid INTEGER, stxname TEXT,
  stxnamespace INTEGER, stxowner INTEGER, stxstattarget INTEGER, stxkeys TEXT, stxkind TEXT);
CREATE TABLE pg_publication(oid INTEGER PRIMARY KEY, pubname TEXT, puballtables BOOLEAN);
CREATE TABLE pg_publication_rel(oid INTEGER PRIMARY KEY, prpubid INTEGER, prrelid INTEGER,
  prqual TEXT, prattrs TEXT);
CREATE TABLE pg_publication_namespace(oid INTEGER PRIMARY KEY, pnpubid INTEGER, pnnspid INTEGER);
CREATE TABLE pg_foreign_table(ftrelid INTEGER, ftserver INTEGER, ftoptions TEXT);
CREATE TABLE pg_partitioned_table(partrelid INTEGER, partstrat TEXT);
CREATE TABLE pg_tablespace(oid INTEGER PRIMARY KEY, spcname TEXT);
CREATE TABLE pg_collation(oid INTEGER PRIMARY KEY, collname TEXT, collnamespace INTEGER);
CREATE TABLE pg_sequence(seqrelid INTEGER, seqtypid INTEGER, seqstart INTEGER,
  seqincrement INTEGER, seqmax INTEGER, seqmin INTEGER, seqcache INTEGER, seqcycle BOOLEAN);
CREATE TABLE pg_opclass(oid INTEGER PRIMARY KEY, opcmethod INTEGER, opcname TEXT,
  opcnamespace INTEGER, opcowner INTEGER, opcfamily INTEGER, opcintype INTEGER,
  opcdefault BOOLEAN, opckeytype INTEGER);
CREATE TABLE pg_rewrite(oid INTEGER PRIMARY KEY, rulename TEXT, ev_class INTEGER);
CREATE TABLE pg_extension(oid INTEGER PRIMARY KEY, extname TEXT, extversion TEXT);
CREATE TABLE pg_settings(name TEXT, setting TEXT);
CREATE TABLE pg_proc(oid INTEGER PRIMARY KEY, proname TEXT, pronamespace INTEGER,
  prokind TEXT, prorettype INTEGER, proargtypes TEXT, proretset BOOLEAN, prolang INTEGER,
  prosrc TEXT, provolatile TEXT, proowner INTEGER, proacl TEXT);
CREATE TABLE pg_enum(oid INTEGER PRIMARY KEY, enumtypid INTEGER, enumsortorder REAL, enumlabel TEXT);
CREATE TABLE pg_range(rngtypid INTEGER, rngsubtype INTEGER, rngmultitypid INTEGER,
  rngcollation INTEGER, rngsubopc INTEGER, rngcanonical TEXT, rngsubdiff TEXT);
CREATE TABLE shoal_declared_type(id INTEGER PRIMARY KEY, declared TEXT);
CREATE VIEW pg_tables AS SELECT n.nspname AS schemaname, c.relname AS tablename,
  'shoal' AS tableowner, NULL AS tablespace, c.relhasindex AS hasindexes, 0 AS hasrules,
  c.relhastriggers AS hastriggers, 0 AS rowsecurity
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r';
CREATE VIEW pg_statio_all_tables AS SELECT c.oid AS relid, n.nspname AS schemaname,
  c.relname AS relname, 0 AS heap_blks_read, 0 AS heap_blks_hit, 0 AS idx_blks_read,
  0 AS idx_blks_hit
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r';
CREATE VIEW pg_statio_user_tables AS SELECT * FROM pg_statio_all_tables;
CREATE VIEW pg_views AS SELECT n.nspname AS schemaname, c.relname AS viewname,
  'shoal' AS viewowner, NULL AS definition
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'v';
CREATE VIEW pg_matviews AS SELECT n.nspname AS schemaname, c.relname AS matviewname,
  'shoal' AS matviewowner, NULL AS tablespace, 0 AS hasindexes, 1 AS ispopulated,
  NULL AS definition
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'm';
CREATE VIEW information_schema_sequences AS SELECT 'shoal' AS sequence_catalog,
  'public' AS sequence_schema, c.relname AS sequence_name, 'bigint' AS data_type,
  64 AS numeric_precision, 2 AS numeric_precision_radix, 0 AS numeric_scale,
  CAST(s.seqstart AS TEXT) AS start_value, CAST(s.seqmin AS TEXT) AS minimum_value,
  CAST(s.seqmax AS TEXT) AS maximum_value, CAST(s.seqincrement AS TEXT) AS increment,
  CASE WHEN s.seqcycle THEN 'YES' ELSE 'NO' END AS cycle_option
  FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid;
CREATE VIEW pg_sequences AS SELECT 'public' AS schemaname, c.relname AS sequencename,
  'shoal' AS sequenceowner, 'bigint' AS data_type, s.seqstart AS start_value,
  s.seqmin AS min_value, s.seqmax AS max_value, s.seqincrement AS increment_by,
  s.seqcycle AS cycle, s.seqcache AS cache_size, NULL AS last_value
  FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid;
-- A session's cursors are its own (pgwire::cursors); the catalog lists none.
CREATE TABLE pg_cursors(name TEXT, statement TEXT, is_holdable BOOLEAN, is_binary BOOLEAN,
  is_scrollable BOOLEAN, creation_time TEXT);
CREATE VIEW pg_indexes AS SELECT n.nspname AS schemaname, t.relname AS tablename,
  c.relname AS indexname, NULL AS tablespace, pg_get_indexdef(i.indexrelid) AS indexdef
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace;
CREATE VIEW information_schema_tables AS SELECT 'shoal' AS table_catalog,
  n.nspname AS table_schema, c.relname AS table_name,
  CASE c.relkind WHEN 'v' THEN 'VIEW' ELSE 'BASE TABLE' END AS table_type
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'v');
-- Gives the computed integer columns of information_schema.columns their type (PostgreSQL's
-- cardinal_number, sent as integer) when a prepared query describes them (see Catalog::shape).
CREATE TABLE information_schema_cardinal_numbers (character_maximum_length INTEGER,
  numeric_precision INTEGER, numeric_precision_radix INTEGER, numeric_scale INTEGER,
  datetime_precision INTEGER);
CREATE VIEW information_schema_columns AS SELECT 'shoal' AS table_catalog,
  n.nspname AS table_schema, c.relname AS table_name, a.attname AS column_name,
  a.attnum AS ordinal_position, d.adbin AS column_default,
  CASE WHEN a.attnotnull THEN 'NO' ELSE 'YES' END AS is_nullable,
  CASE WHEN t.typtype = 'e' THEN 'USER-DEFINED' WHEN t.typcategory = 'A' THEN 'ARRAY'
    ELSE coalesce(a.type_name, t.typname) END AS data_type,
  t.typname AS udt_name, 'pg_catalog' AS udt_schema,
  CASE WHEN a.type_name IN ('character varying', 'character') AND instr(a.full_type, '(') > 0
    THEN CAST(substr(a.full_type, instr(a.full_type, '(') + 1) AS INTEGER) END
    AS character_maximum_length,
  CASE a.type_name WHEN 'smallint' THEN 16 WHEN 'integer' THEN 32 WHEN 'bigint' THEN 64
    WHEN 'real' THEN 24 WHEN 'double precision' THEN 53
    WHEN 'numeric' THEN CASE WHEN instr(a.full_type, '(') > 0
      THEN CAST(substr(a.full_type, instr(a.full_type, '(') + 1) AS INTEGER) END
    END AS numeric_precision,
  CASE WHEN a.type_name IN ('smallint', 'integer', 'bigint', 'real', 'double precision') THEN 2
    WHEN a.type_name = 'numeric' THEN 10 END AS numeric_precision_radix,
  CASE WHEN a.type_name IN ('smallint', 'integer', 'bigint') THEN 0
    WHEN a.type_name = 'numeric' AND instr(a.full_type, ',') > 0
      THEN CAST(substr(a.full_type, instr(a.full_type, ',') + 1) AS INTEGER)
    WHEN a.type_name = 'numeric' AND instr(a.full_type, '(') > 0 THEN 0 END AS numeric_scale,
  CASE WHEN a.type_name LIKE 'time%' THEN 6 WHEN a.type_name = 'date' THEN 0 END
    AS datetime_precision,
  'NO' AS is_identity, 'NEVER' AS is_generated, 'YES' AS is_updatable,
  NULL AS collation_name
  FROM (SELECT *, CASE WHEN instr(full_type, '(') > 0
        THEN rtrim(substr(full_type, 1, instr(full_type, '(') - 1)) ELSE full_type END AS type_name
      FROM (SELECT *, format_type(atttypid, atttypmod) AS full_type FROM pg_attribute)) a
  JOIN pg_class c ON c.oid = a.attrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
  WHERE c.relkind IN ('r', 'v') AND a.attnum > 0;
-- Constraints by the SQL standard's views (Sequelize and TypeORM read foreign keys so).
CREATE VIEW information_schema_table_constraints AS SELECT 'shoal' AS constraint_catalog,
  'public' AS constraint_schema, c.conname AS constraint_name, 'shoal' AS table_catalog,
  'public' AS table_schema, t.relname AS table_name,
  CASE c.contype WHEN 'p' THEN 'PRIMARY KEY' WHEN 'u' THEN 'UNIQUE' WHEN 'f' THEN 'FOREIGN KEY'
    ELSE 'CHECK' END AS constraint_type,
  CASE WHEN c.condeferrable THEN 'YES' ELSE 'NO' END AS is_deferrable,
  CASE WHEN c.condeferred THEN 'YES' ELSE 'NO' END AS initially_deferred,
  'YES' AS enforced, NULL AS nulls_distinct
  FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid;
CREATE VIEW information_schema_key_column_usage AS SELECT 'shoal' AS constraint_catalog,
  'public' AS constraint_schema, c.conname AS constraint_name, 'shoal' AS table_catalog,
  'public' AS table_schema, t.relname AS table_name, a.attname AS column_name,
  k.key + 1 AS ordinal_position,
  CASE WHEN c.contype = 'f' THEN k.key + 1 END AS position_in_unique_constraint
  FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid
  JOIN json_each(shoal_array_json(c.conkey)) k
  JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.value
  WHERE c.contype IN ('p', 'u', 'f');
CREATE VIEW information_schema_constraint_column_usage AS SELECT 'shoal' AS table_catalog,
  'public' AS table_schema, t.relname AS table_name, a.attname AS column_name,
  'shoal' AS constraint_catalog, 'public' AS constraint_schema, c.conname AS constraint_name
  FROM pg_constraint c
  JOIN pg_class t ON t.oid = CASE WHEN c.contype = 'f' THEN c.confrelid ELSE c.conrelid END
  JOIN json_each(shoal_array_json(CASE WHEN c.contype = 'f' THEN c.confkey ELSE c.conkey END)) k
  JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.value;
CREATE VIEW information_schema_referential_constraints AS SELECT 'shoal' AS constraint_catalog,
  'public' AS constraint_schema, c.conname AS constraint_name,
  'shoal' AS unique_constraint_catalog, 'public' AS unique_constraint_schema,
  NULL AS unique_constraint_name, 'NONE' AS match_option,
  CASE c.confupdtype WHEN 'c' THEN 'CASCADE' WHEN 'n' THEN 'SET NULL' WHEN 'd' THEN 'SET DEFAULT'
    WHEN 'r' THEN 'RESTRICT' ELSE 'NO ACTION' END AS update_rule,
  CASE c.confdeltype WHEN 'c' THEN 'CASCADE' WHEN 'n' THEN 'SET NULL' WHEN 'd' THEN 'SET DEFAULT'
    WHEN 'r' THEN 'RESTRICT' ELSE 'NO ACTION' END AS delete_rule
  FROM pg_constraint c WHERE c.contype = 'f';
CREATE VIEW information_schema_schemata AS SELECT 'shoal' AS catalog_name,
  nspname AS schema_name, 'shoal' AS schema_owner FROM pg_namespace;
INSERT INTO pg_namespace VALUES (11, 'pg_catalog', 10, NULL), (2200, 'public', 10, NULL),
  (13000, 'information_schema', 10, NULL);
INSERT INTO pg_am VALUES (2, 'heap', 'heap_tableam_handler', 't'),
  (403, 'btree', 'bthandler', 'i');
INSERT INTO pg_roles VALUES (10, 'shoal', 1, 1, 1, 1, 1, 0, -1, NULL, NULL, 0, NULL);
INSERT INTO pg_database VALUES (16000, 'shoal', 10, 6, 'c', 0, 1, -1, 'C', 'C', NULL, NULL, NULL, 1663);
INSERT INTO pg_tablespace VALUES (1663, 'pg_default');
INSERT INTO pg_collation VALUES (100, 'default', 11);
INSERT INTO pg_type(oid, typname, typnamespace, typowner, typlen, typbyval, typtype, typcategory,
  typispreferred, typisdefined, typdelim, typrelid, typelem, typarray, typnotnull, typbasetype,
  typtypmod, typndims, typcollation) VALUES
  (16, 'bool', 11, 10, 1, 1, 'b', 'B', 1, 1, ',', 0, 0, 1000, 0, 0, -1, 0, 0),
  (17, 'bytea', 11, 10, -1, 0, 'b', 'U', 0, 1, ',', 0, 0, 1001, 0, 0, -1, 0, 0),
  (20, 'int8', 11, 10, 8, 1, 'b', 'N', 0, 1, ',', 0, 0, 1016, 0, 0, -1, 0, 0),
  (21, 'int2', 11, 10, 2, 1, 'b', 'N', 0, 1, ',', 0, 0, 1005, 0, 0, -1, 0, 0),
  (23, 'int4', 11, 10, 4, 1, 'b', 'N', 0, 1, ',', 0, 0, 1007, 0, 0, -1, 0, 0),
  (25, 'text', 11, 10, -1, 0, 'b', 'S', 1, 1, ',', 0, 0, 1009, 0, 0, -1, 0, 100),
  (700, 'float4', 11, 10, 4, 1, 'b', 'N', 0, 1, ',', 0, 0, 1021, 0, 0, -1, 0, 0),
  (701, 'float8', 11, 10, 8, 1, 'b', 'N', 1, 1, ',', 0, 0, 1022, 0, 0, -1, 0, 0),
  (1043, 'varchar', 11, 10, -1, 0, 'b', 'S', 0, 1, ',', 0, 0, 1015, 0, 0, -1, 0, 100),
  (1082, 'date', 11, 10, 4, 1, 'b', 'D', 0, 1, ',', 0, 0, 1182, 0, 0, -1, 0, 0),
  (1083, 'time', 11, 10, 8, 1, 'b', 'D', 0, 1, ',', 0, 0, 1183, 0, 0, -1, 0, 0),
  (1114, 'timestamp', 11, 10, 8, 1, 'b', 'D', 0, 1, ',', 0, 0, 1115, 0, 0, -1, 0, 0),
  (1184, 'timestamptz', 11, 10, 8, 1, 'b', 'D', 1, 1, ',', 0, 0, 1185, 0, 0, -1, 0, 0),
  (1700, 'numeric', 11, 10, -1, 0, 'b', 'N', 0, 1, ',', 0, 0, 1231, 0, 0, -1, 0, 0),
  (114, 'json', 11, 10, -1, 0, 'b', 'U', 0, 1, ',', 0, 0, 199, 0, 0, -1, 0, 0),
  (2950, 'uuid', 11, 10, 16, 0, 'b', 'U', 0, 1, ',', 0, 0, 2951, 0, 0, -1, 0, 0),
  (3802, 'jsonb', 11, 10, -1, 0, 'b', 'U', 0, 1, ',', 0, 0, 3807, 0, 0, -1, 0, 0),
  (1186, 'interval', 11, 10, 16, 0, 'b', 'T', 1, 1, ',', 0, 0, 1187, 0, 0, -1, 0, 0),
  (26, 'oid', 11, 10, 4, 1, 'b', 'N', 0, 1, ',', 0, 0, 1028, 0, 0, -1, 0, 0),
  (19, 'name', 11, 10, 64, 0, 'b', 'S', 0, 1, ',', 0, 18, 1003, 0, 0, -1, 0, 950);
-- Each type's array type (`_int4`, …), as PostgreSQL lists them (asyncpg introspects these).
INSERT INTO pg_type(oid, typname, typnamespace, typowner, typlen, typbyval, typtype, typcategory,
  typispreferred, typisdefined, typdelim, typrelid, typelem, typarray, typnotnull, typbasetype,
  typtypmod, typndims, typcollation)
  SELECT typarray, '_' || typname, 11, 10, -1, 0, 'b', 'A', 0, 1, ',', 0, oid, 0, 0, 0, -1, 0,
    typcollation FROM pg_type WHERE typarray != 0;
