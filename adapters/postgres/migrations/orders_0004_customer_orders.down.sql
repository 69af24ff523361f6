DROP INDEX orders.orders_customer_id;
