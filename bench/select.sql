\set id random(1, 1000000000)
SELECT v FROM kv WHERE k = :id;
