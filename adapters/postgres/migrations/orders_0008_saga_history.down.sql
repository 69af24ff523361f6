DROP TRIGGER order_changed_notify ON orders.saga_history;
DROP FUNCTION orders.order_changed_notify();
DROP TABLE orders.saga_history;
DROP INDEX orders.sagas_failed;
