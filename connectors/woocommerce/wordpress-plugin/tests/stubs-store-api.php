<?php
/**
 * The Store API exception the update callback throws (namespaced, so in its own file).
 *
 * @package Stammkunde
 */

namespace Automattic\WooCommerce\StoreApi\Exceptions;

// phpcs:disable

class RouteException extends \Exception {
	public $error_code;
	public $http_status_code;
	public function __construct( $error_code, $message, $http_status_code = 400 ) {
		$this->error_code = $error_code;
		$this->http_status_code = $http_status_code;
		parent::__construct( $message, $http_status_code );
	}
}
